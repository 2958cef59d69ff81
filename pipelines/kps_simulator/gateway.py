"""The API gateway's and IAM's side of authentication: tokens, IAM users, AK/SK pairs.

Decides where a request's credentials work (a region, every region, or nowhere: a 401 as the
gateway words it), and hands out IAM tokens for passwords.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kps_simulator import signature
from kps_simulator.errors import ApiError, bad_credentials
from kps_simulator.replies import Reply, json_reply

MAX_SIGNING_SKEW = timedelta(minutes=15)
AK_MAX_FAILURES = 5  # failed signatures in a row that lock an AK
AK_LOCK_SECONDS = 300
ANY_REGION = "*"  # scope of the constructor's token: every project, every region
UNSCOPED = ""  # scope of an IAM token asked for without a project


class Gateway:
    """Who may call, and where: thread-safe, as the server's threads all ask it."""

    def __init__(self, token: str) -> None:
        self._lock = threading.Lock()
        self._iam_users: dict[tuple[str, str], str] = {}  # (domain, user name) -> password
        self._tokens: dict[str, str] = {token: ANY_REGION}  # token -> region it works in
        self._expired: set[str] = set()
        self._access_keys: dict[str, str] = {}
        self._ak_failures: dict[str, tuple[int, float]] = {}  # AK -> (failures, locked until)

    def add_iam_user(self, name: str, password: str, domain: str) -> None:
        """An IAM user who can exchange a password for a token at POST /v3/auth/tokens."""
        with self._lock:
            self._iam_users[(domain, name)] = password

    def add_token(self, token: str) -> None:
        """Another token the gateway accepts for every project, like the constructor's."""
        with self._lock:
            self._tokens[token] = ANY_REGION

    def add_access_key(self, access_key: str, secret_key: str) -> None:
        """An AK/SK pair whose SDK-HMAC-SHA256 signatures the gateway accepts."""
        with self._lock:
            self._access_keys[access_key] = secret_key

    def expire_token(self, token: str | None = None) -> None:
        """Make this token (default: every valid token) answer 401 APIGW.0307."""
        with self._lock:
            expiring = [token] if token is not None else list(self._tokens)
            for each in expiring:
                self._tokens.pop(each, None)
                self._expired.add(each)

    def issue_token(self, body: bytes, regions: Mapping[str, str]) -> Reply:
        """IAM's answer to a password: a token scoped to the asked project's region, or
        unscoped; `regions` maps the simulator's projects to theirs."""
        user, password, domain, project_id = password_auth(body)
        with self._lock:
            if self._iam_users.get((domain, user)) != password:
                raise bad_credentials("the user name or password is incorrect.")
            if project_id is not None and project_id not in regions:
                raise bad_credentials(f"project {project_id} does not exist.")
            region = regions[project_id] if project_id else None
            token = f"sim-iam-{uuid.uuid4().hex}"
            self._tokens[token] = region or UNSCOPED
        expires = datetime.now(UTC) + timedelta(hours=24)
        payload: dict[str, Any] = {
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "methods": ["password"],
            "user": {"name": user, "domain": {"name": domain}},
        }
        if region is not None:
            payload["project"] = {"id": project_id, "name": region}
        return json_reply(201, {"token": payload}, {"X-Subject-Token": token})

    def scope(self, method: str, target: str, headers: Mapping[str, str]) -> str:
        """Where the request's credentials work: a token's region, or every region for a
        good signature; raises the gateway's 401 otherwise."""
        signed = signature.parse_authorization(headers.get("authorization", ""))
        if signed is not None:
            return self._verify_signature(signed, method, target, headers)
        token = headers.get("x-auth-token")
        if not token:
            raise bad_credentials("the X-Auth-Token header is missing.")
        with self._lock:
            if token in self._expired:
                raise ApiError(401, "APIGW.0307", "The token has expired.")
            scope = self._tokens.get(token)
        if scope is None:
            raise bad_credentials("decrypt token fail.")
        return scope

    def _verify_signature(
        self,
        signed: signature.Authorization,
        method: str,
        target: str,
        headers: Mapping[str, str],
    ) -> str:
        """Checks an SDK-HMAC-SHA256 signature as the gateway does (see `signature.py`), locking
        an AK for five minutes after five failures in a row."""
        with self._lock:
            secret_key = self._access_keys.get(signed.access_key)
            failures, locked_until = self._ak_failures.get(signed.access_key, (0, 0.0))
        if time.monotonic() < locked_until:
            raise bad_credentials("the access key is locked after 5 failed signatures.")
        try:
            signed_at = datetime.strptime(headers.get("x-sdk-date", ""), signature.DATE_FORMAT)
        except ValueError:
            signed_at = None
        fresh = (
            signed_at is not None
            and abs(datetime.now(UTC) - signed_at.replace(tzinfo=UTC)) <= MAX_SIGNING_SKEW
        )
        good = (
            fresh
            and secret_key is not None
            and {"host", "x-sdk-date"} <= set(signed.signed_headers)
            and hmac.compare_digest(
                signature.expected_signature(
                    secret_key, method, target, headers, signed.signed_headers
                ),
                signed.signature,
            )
        )
        if not good:
            with self._lock:
                failures += 1
                lock = time.monotonic() + AK_LOCK_SECONDS if failures >= AK_MAX_FAILURES else 0.0
                self._ak_failures[signed.access_key] = (0 if lock else failures, lock)
            raise bad_credentials("verify aksk signature fail.")
        with self._lock:
            self._ak_failures.pop(signed.access_key, None)
        return ANY_REGION


def password_auth(body: bytes) -> tuple[str, str, str, str | None]:
    """(user, password, domain, scoped project id or None) from an IAM password request body."""
    try:
        auth = json.loads(body)["auth"]
        user = auth["identity"]["password"]["user"]
        credentials = (str(user["name"]), str(user["password"]), str(user["domain"]["name"]))
        project = (auth.get("scope") or {}).get("project") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ApiError(400, "APIGW.0201", "Request error: not an IAM password auth body.") from None
    project_id = project.get("id")
    return (*credentials, None if project_id is None else str(project_id))
