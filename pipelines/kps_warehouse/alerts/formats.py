"""Each receiver format's messages, signatures and idea of success.

`json` sends one POST per event (the generic payload, README "Alerts"); the chat formats send
one message per run for up to `EVENTS_PER_MESSAGE` events, since their group bots allow about
20 messages a minute (DingTalk, WeCom). Feishu and DingTalk sign as their custom-bot
documentation says; a `json` receiver with a secret gets an HMAC of the body in headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .config import Receiver

EVENTS_PER_MESSAGE = 10
# Slack's section text takes 3,000 characters, WeCom's markdown 4,096 bytes: one budget for all
TEXT_BYTES = 3000
LINE_CHARS = 300
SOURCE = "kps-warehouse"


@dataclass(frozen=True)
class Message:
    """One POST: the events it carries and its JSON body, before signing."""

    keys: tuple[str, ...]
    body: dict[str, Any]


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict[str, str]
    body: bytes


def messages(receiver: Receiver, events: Sequence[dict[str, Any]]) -> list[Message]:
    """The messages that carry `events` (payload dicts, see `payload`) to this receiver."""
    if receiver.format == "json":
        return [Message((event["key"],), event) for event in events]
    return [
        Message(tuple(e["key"] for e in chunk), _chat_body(receiver.format, chunk))
        for chunk in _chunks(events)
    ]


def payload(event: dict[str, Any]) -> dict[str, Any]:
    """The generic `json` payload of a stored event."""
    day = event["day"]
    return {
        "event": event["event"],
        "key": event["key"],
        "severity": event["severity"],
        "project_id": event["project_id"],
        "dimension": event["dimension"],
        "name": event["name"],
        "day": day.isoformat() if day else None,
        "failures": event["failures"],
        "baseline": event["baseline"],
        "z_score": event["z_score"],
        "run_id": event["run_id"],
        "summary": event["summary"],
        "source": SOURCE,
    }


def request(receiver: Receiver, message: Message, now: float) -> Request:
    """The POST to make at unix time `now`, signed where the format signs."""
    body = dict(message.body)
    url = receiver.url
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if receiver.secret and receiver.format == "feishu":
        timestamp = str(int(now))
        body = {"timestamp": timestamp, "sign": feishu_sign(timestamp, receiver.secret), **body}
    elif receiver.secret and receiver.format == "dingtalk":
        timestamp = str(int(now * 1000))
        url = _with_query(url, timestamp=timestamp, sign=dingtalk_sign(timestamp, receiver.secret))
    data = json.dumps(body, ensure_ascii=False).encode()
    if receiver.secret and receiver.format == "json":
        timestamp = str(int(now))
        signed = hmac.new(receiver.secret.encode(), timestamp.encode() + b"." + data, "sha256")
        headers["X-Kps-Warehouse-Timestamp"] = timestamp
        headers["X-Kps-Warehouse-Signature"] = f"sha256={signed.hexdigest()}"
    return Request(url, headers, data)


def feishu_sign(timestamp: str, secret: str) -> str:
    """Feishu/Lark custom bot: base64 of HMAC-SHA256 keyed with "timestamp\\nsecret" over
    nothing; `timestamp` in seconds, both go in the body."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def dingtalk_sign(timestamp: str, secret: str) -> str:
    """DingTalk custom robot: base64 of HMAC-SHA256 keyed with the secret over
    "timestamp\\nsecret"; `timestamp` in milliseconds, both go in the URL's query (url-encoded
    there, by `urlencode`)."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def refusal(fmt: str, status: int, body: bytes) -> str | None:
    """Why the receiver did not take the message, or None when it did. Feishu, DingTalk and
    WeCom answer 200 with an error code in the body (a bad signature, a rate limit)."""
    if not 200 <= status < 300:
        return f"HTTP {status}"
    if fmt in ("json", "slack"):
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return f"HTTP {status} without a JSON answer"
    if not isinstance(answer, dict):
        return f"HTTP {status} without a JSON object"
    # Feishu's older answers carry StatusCode only
    code = (
        answer.get("code", answer.get("StatusCode")) if fmt == "feishu" else answer.get("errcode")
    )
    return None if code == 0 else f"{fmt} error code {code}"


def _chunks(events: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Events in groups that fit one chat message."""
    chunks: list[list[dict[str, Any]]] = []
    size = 0
    for event in events:
        line = len(_line(event).encode()) + 64  # markup and the header's share
        if not chunks or len(chunks[-1]) == EVENTS_PER_MESSAGE or size + line > TEXT_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(event)
        size += line
    return chunks


def _line(event: dict[str, Any]) -> str:
    text = " ".join(event["summary"].split())
    return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "…"


def _title(events: Sequence[dict[str, Any]]) -> str:
    return f"{SOURCE}: {len(events)} new alert{'s' if len(events) != 1 else ''}"


def _chat_body(fmt: str, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    title = _title(events)
    plain = "\n".join([title, *(f"[{e['severity']}] {_line(e)}" for e in events)])
    markdown = "\n".join([f"**{title}**", *(f"- **{e['severity']}** {_line(e)}" for e in events)])
    if fmt == "slack":
        lines = "\n".join(f"• *{e['severity']}* {_slack_escape(_line(e))}" for e in events)
        return {
            "text": plain,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title}},
                {"type": "section", "text": {"type": "mrkdwn", "text": lines}},
            ],
        }
    if fmt == "feishu":
        return {"msg_type": "text", "content": {"text": plain}}
    if fmt == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": title, "text": markdown}}
    return {"msgtype": "markdown", "markdown": {"content": markdown}}  # wecom


def _slack_escape(text: str) -> str:
    """Slack reads &, < and > as markup (`<!channel>` would ping everyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _with_query(url: str, **params: str) -> str:
    """The URL with `params` appended to its query, which is kept as it was."""
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(query=query))
