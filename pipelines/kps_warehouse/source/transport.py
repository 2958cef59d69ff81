"""HTTP for the KPS client: pooled connections, retries, and the environment's proxies and CA
bundle.

Knows nothing of KPS. It is urllib3 used directly, not through requests: a page read through
requests cost two to three times the CPU (its hooks, adapters and 10 KB chunked reads), and a client
reading a thousand projects is CPU-bound, not network-bound.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass_environment

import certifi
import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util.retry import Retry

# The variables requests and curl read for a CA bundle, then OpenSSL's own, then certifi's.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


class TransportError(Exception):
    """A request that got no answer, retries included; `str()` is one line."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Transport:
    """Sends requests through one connection pool per proxy (or none), keeping up to
    `pool_size` connections per host. Redirects are not followed: credentials go only where
    they were configured to go."""

    def __init__(self, retries: Retry | bool, timeout_seconds: float, pool_size: int) -> None:
        self.retries = retries
        self.timeout = urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds)
        self.pool_size = pool_size
        # Compressed answers, as requests asks for them: a page is a tenth of its size gzipped.
        self.headers = urllib3.util.make_headers(accept_encoding=True)
        self._by_proxy: dict[str | None, urllib3.PoolManager] = {}
        self._by_origin: dict[str, urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: urllib3.Timeout | None = None,
    ) -> Response:
        """The answer, whatever its status; raises TransportError when there is none.
        `timeout` replaces the transport's own for this request."""
        try:
            answer = self._manager(url).request(
                method,
                url,
                body=body,
                headers={**self.headers, **headers},
                retries=self.retries,
                timeout=timeout or self.timeout,
                redirect=False,
            )
        except HTTPError as exc:
            raise TransportError(describe(exc)) from exc
        return Response(answer.status, answer.reason or "", answer.headers, answer.data)

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The pool for this URL's origin; the environment is read once per origin."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if (manager := self._by_origin.get(origin)) is None:
            with self._lock:
                proxy = environment_proxy(parts.scheme, parts.netloc)
                if (manager := self._by_proxy.get(proxy)) is None:
                    manager = self._by_proxy[proxy] = self._new_manager(proxy)
                self._by_origin[origin] = manager
        return manager

    def _new_manager(self, proxy: str | None) -> urllib3.PoolManager:
        bundle = ca_bundle()
        options: dict[str, Any] = {
            "maxsize": self.pool_size,
            "cert_reqs": "CERT_REQUIRED",
            # A directory of certificates works too, as with requests and curl.
            ("ca_cert_dir" if Path(bundle).is_dir() else "ca_certs"): bundle,
        }
        return urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)


def environment_proxy(scheme: str, netloc: str) -> str | None:
    """The proxy HTTPS_PROXY, HTTP_PROXY or ALL_PROXY names for this host, unless NO_PROXY
    exempts it (either case of each name, as curl and requests read them)."""
    proxies = getproxies()
    if proxy_bypass_environment(netloc.lower(), proxies):
        return None
    if in_no_proxy_network(netloc, proxies.get("no", "")):
        return None
    return proxies.get(scheme) or proxies.get("all")


def in_no_proxy_network(netloc: str, no_proxy: str) -> bool:
    """Whether the host is an IP address in a network NO_PROXY lists, such as 10.0.0.0/8: requests
    and curl read those, the standard library only names and single addresses."""
    try:
        address = ipaddress.ip_address(urlsplit(f"//{netloc}").hostname or "")
    except ValueError:
        return False
    for entry in no_proxy.split(","):
        try:
            if address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue  # a name, not a network
    return False


def ca_bundle() -> str:
    for name in CA_BUNDLE_VARIABLES:
        if path := os.environ.get(name):
            return path
    return certifi.where()


def describe(exc: HTTPError) -> str:
    """What a request ended with, in one line; after retries, the last error's."""
    cause: Exception = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
