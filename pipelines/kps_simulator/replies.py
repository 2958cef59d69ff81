"""Answers as the handler sends them: status, body, headers, and the ways a body can break."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from gzip import compress as gzip_compress
from typing import Any

from kps_simulator.errors import ApiError

JSON_TYPE = "application/json;charset=UTF-8"


@dataclass
class Reply:
    """A finished answer; `drop` closes the socket instead, `cut_at` truncates the body."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    cut_at: int | None = None


def gzipped(reply: Reply) -> Reply:
    """The reply compressed; a body cut off midway is cut at the same share of its bytes."""
    body = gzip_compress(reply.body, compresslevel=1)
    cut_at = None if reply.cut_at is None else len(body) * reply.cut_at // len(reply.body)
    headers = {**reply.headers, "Content-Encoding": "gzip"}
    return replace(reply, body=body, headers=headers, cut_at=cut_at)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Reply(status, body, headers=headers or {})


def error_reply(error: ApiError) -> Reply:
    payload = {"error_code": error.code, "error_msg": error.message}
    return json_reply(error.status, payload, error.headers)
