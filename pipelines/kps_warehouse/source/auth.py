"""The three ways Huawei Cloud authenticates a KPS call: a ready token, an IAM password, AK/SK.

Knows nothing of dlt. Each kind hands the client the headers that authenticate one project's
requests, and says whether a 401 "token expired" is worth one retry with fresh credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from .transport import Response, Transport, TransportError

DEFAULT_IAM_ENDPOINT = "https://iam.myhuaweicloud.com"
SIGNING_ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
IAM_TIMEOUT_SECONDS = 30.0

# The headers that authenticate one request, given its method and URL (a signature covers both).
Stamp = Callable[[str, str], dict[str, str]]


class AuthError(Exception):
    """Credentials were refused or could not be obtained; `str()` is one line, never a secret."""


class Auth(Protocol):
    """Credentials for the KPS API."""

    def for_project(self, project_id: str, region: str) -> Stamp:
        """What signs or stamps one project's calls."""
        ...

    def refresh(self, project_id: str) -> bool:
        """Forgets a token the API called expired; True when a retry can succeed."""
        ...

    def for_iam(self) -> Stamp:
        """What stamps calls to IAM's own API (listing projects)."""
        ...


class _Header:
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def __call__(self, method: str, url: str) -> dict[str, str]:
        return {self.name: self.value}


@dataclass(frozen=True)
class TokenAuth:
    """A ready IAM token, sent as `X-Auth-Token`; nothing to refresh when it expires."""

    token: str = field(repr=False)

    def for_project(self, project_id: str, region: str) -> Stamp:
        return _Header("X-Auth-Token", self.token)

    def refresh(self, project_id: str) -> bool:
        return False

    def for_iam(self) -> Stamp:
        return _Header("X-Auth-Token", self.token)


@dataclass
class PasswordAuth:
    """An IAM user's password, exchanged for one project-scoped token per project, reused while
    valid and fetched anew once when the API says it expired."""

    user_name: str
    password: str = field(repr=False)
    domain_name: str
    iam_endpoint: str = DEFAULT_IAM_ENDPOINT
    # A password is never sent twice on its own: a failed exchange fails, no retry.
    transport: Transport = field(
        default_factory=lambda: Transport(False, IAM_TIMEOUT_SECONDS, pool_size=4), repr=False
    )
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def for_project(self, project_id: str, region: str) -> Stamp:
        with self._lock:
            token = self._tokens.get(project_id)
            if token is None:
                token = self._tokens[project_id] = self._exchange(project_id)
        return _Header("X-Auth-Token", token)

    def refresh(self, project_id: str) -> bool:
        with self._lock:
            self._tokens.pop(project_id, None)
        return True

    def for_iam(self) -> Stamp:
        return _Header("X-Auth-Token", self._exchange(None))

    def _exchange(self, project_id: str | None) -> str:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.user_name,
                            "password": self.password,
                            "domain": {"name": self.domain_name},
                        }
                    },
                },
            }
        }
        if project_id is not None:  # without a project, IAM gives an unscoped token
            body["auth"]["scope"] = {"project": {"id": project_id}}
        url = self.iam_endpoint.rstrip("/") + "/v3/auth/tokens"
        try:
            response = self.transport.request(
                "POST", url, {"Content-Type": "application/json"}, json.dumps(body).encode()
            )
        except TransportError as exc:
            raise AuthError(f"IAM token request failed: {exc}") from None
        token = response.headers.get("X-Subject-Token")
        if response.status != 201 or not token:
            raise AuthError(f"IAM refused the password of {self.user_name}: {_error(response)}")
        return token


@dataclass(frozen=True)
class AkSkAuth:
    """An access key and secret key signing every request (SDK-HMAC-SHA256), plus the
    security token of temporary credentials."""

    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def for_project(self, project_id: str, region: str) -> Stamp:
        return _Signer(self, project_id)

    def refresh(self, project_id: str) -> bool:
        # Five failed signatures in a row lock the AK for 5 minutes: never retry blindly.
        return False

    def for_iam(self) -> Stamp:
        return _Signer(self, None)


class _Signer:
    def __init__(self, keys: AkSkAuth, project_id: str | None) -> None:
        self.keys, self.project_id = keys, project_id

    def __call__(self, method: str, url: str) -> dict[str, str]:
        headers = {"X-Project-Id": self.project_id} if self.project_id else {}
        if self.keys.security_token:
            headers["X-Security-Token"] = self.keys.security_token
        return sign(
            method, url, headers, self.keys.access_key, self.keys.secret_key, datetime.now(UTC)
        )


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    access_key: str,
    secret_key: str,
    now: datetime,
    body: bytes = b"",
) -> dict[str, str]:
    """`headers` plus Host, X-Sdk-Date and the Authorization of Huawei's SDK-HMAC-SHA256.

    The URL must be sent exactly as signed: its query is signed in sorted order.
    """
    parts = urlsplit(url)
    signed = {**headers, "Host": parts.netloc, "X-Sdk-Date": now.strftime(SDK_DATE_FORMAT)}
    names = sorted(k.lower() for k in signed if "_" not in k)
    values = {k.lower(): str(v).strip() for k, v in signed.items()}
    canonical = "\n".join(
        [
            method.upper(),
            canonical_uri(parts.path),
            canonical_query(_query_pairs(parts.query)),
            "".join(f"{name}:{values[name]}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        [SIGNING_ALGORITHM, signed["X-Sdk-Date"], hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signature = hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    signed["Authorization"] = (
        f"{SIGNING_ALGORITHM} Access={access_key}, SignedHeaders={';'.join(names)},"
        f" Signature={signature}"
    )
    return signed


def canonical_uri(path: str) -> str:
    encoded = "/".join(quote(part, safe="~") for part in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The query as signed, and as it must be sent: sorted, percent-encoded."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(pairs))


def _query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def _error(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status}"
    if isinstance(body, dict) and "error_code" in body:
        return f"{response.status} {body['error_code']} {body.get('error_msg', '')}".strip()
    return f"HTTP {response.status}"
