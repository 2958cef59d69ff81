"""The gateway's check of an AK/SK signature (SDK-HMAC-SHA256), from the request as received.

Written from Huawei's "API Signature Authentication Mechanism"
(support.huaweicloud.com/devg-apisign/api-sign-algorithm-001.html), not from the client's
signer: a mistake in either then shows as a refused request.

    CanonicalRequest = method \\n CanonicalURI \\n CanonicalQueryString \\n CanonicalHeaders \\n
                       SignedHeaders \\n hex(sha256(body))
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n hex(sha256(CanonicalRequest))
    Signature        = hex(HMAC-SHA256(SK, StringToSign))
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"  # X-Sdk-Date, UTC
# RFC 3986's unreserved characters: the only ones left as they are.
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-_.~")


@dataclass(frozen=True)
class Authorization:
    """`Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=HEX`."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization | None:
    """The header's three parts, or None when it is not an SDK-HMAC-SHA256 signature."""
    algorithm, _, rest = value.partition(" ")
    if algorithm != ALGORITHM:
        return None
    parts = {}
    for item in rest.split(","):
        name, _, part = item.strip().partition("=")
        parts[name] = part
    return Authorization(
        parts.get("Access", ""),
        tuple(filter(None, parts.get("SignedHeaders", "").split(";"))),
        parts.get("Signature", ""),
    )


def expected_signature(
    secret_key: str,
    method: str,
    target: str,
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    body: bytes = b"",
) -> str:
    """The signature the gateway computes for a request: `target` is the path and query as
    sent, `headers` the received headers by lower-case name."""
    parts = urlsplit(target)
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_uri(parts.path),
            canonical_query_string(parts.query),
            "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers),
            ";".join(signed_headers),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            headers.get("x-sdk-date", ""),
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    return hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def uri_encode(text: str) -> str:
    """Every character but the unreserved ones as %XY of its UTF-8 bytes, upper-case hex."""
    return "".join(
        char if char in UNRESERVED else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in text
    )


def canonical_uri(path: str) -> str:
    """Each segment of the path URI-encoded; always ending in a slash."""
    encoded = "/".join(uri_encode(unquote(segment)) for segment in path.split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query_string(query: str) -> str:
    """`name=value` pairs, each side URI-encoded, sorted by name (then value), joined by &."""
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((uri_encode(unquote(name)), uri_encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))
