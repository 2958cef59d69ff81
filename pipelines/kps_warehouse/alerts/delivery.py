"""Sends the pending deliveries, each receiver in its own thread, all within one time budget.

Each message's deliveries are committed `sending` before its request goes out, and then `sent`,
`pending` (the receiver surely did not take it: no connection, an error status, an error code)
or `unknown` (it may have: the request was written but no answer came). Failures that may pass
(no connection, 429, 5xx) are retried with backoff while the budget lasts; a receiver that
still fails is left for the next run, with the rest of its messages.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import urllib3
from urllib3.exceptions import ConnectTimeoutError, ProxyError, SSLError

from kps_warehouse.source.transport import Transport, TransportError

from . import formats, state
from .config import Receiver, Settings

CONNECT_SECONDS = 3.0
READ_SECONDS = 5.0
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5
# below this much budget a request is not started: it could only time out
MIN_ATTEMPT_SECONDS = 0.2
# errors raised before any byte of the request was sent (a refused or failed connection
# is a ConnectTimeoutError too): the receiver surely did not get it
NOT_SENT = (ConnectTimeoutError, SSLError, ProxyError)


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Attempt:
    status: str  # sent, pending or unknown
    requests: int
    error: str | None = None


def deliver(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, transport: Transport
) -> Tally:
    """Sends every configured receiver's pending deliveries within `settings.budget_seconds`."""
    deadline = time.monotonic() + settings.budget_seconds
    writing = threading.Lock()  # one writer at a time; each thread has its own cursor

    def one(receiver: Receiver) -> Tally:
        with con.cursor() as cursor:
            return _deliver_to(receiver, cursor, writing, settings, run_id, transport, deadline)

    total = Tally()
    with ThreadPoolExecutor(max_workers=len(settings.receivers)) as pool:
        for tally in pool.map(one, settings.receivers):
            total.sent += tally.sent
            total.failed += tally.failed
    return total


def _deliver_to(
    receiver: Receiver,
    con: duckdb.DuckDBPyConnection,
    writing: threading.Lock,
    settings: Settings,
    run_id: str,
    transport: Transport,
    deadline: float,
) -> Tally:
    tally = Tally()

    def mark(
        keys: tuple[str, ...], status: str, error: str | None = None, requests: int = 0
    ) -> None:
        with writing:
            state.mark(
                con,
                keys,
                receiver.id,
                status,
                run_id=run_id,
                now=_now(),
                error=error,
                requests=requests,
            )

    with writing:
        events = state.pending(con, receiver.id)
    now = _now()
    if muted := tuple(e["key"] for e in events if settings.muted(e["key"], now)):
        mark(muted, "muted")
    payloads = [formats.payload(e) for e in events if e["key"] not in muted]
    for message in formats.messages(receiver, payloads):
        if deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            break
        mark(message.keys, "sending")
        attempt = _send(receiver, message, transport, deadline)
        mark(message.keys, attempt.status, attempt.error, attempt.requests)
        if attempt.status != "sent":
            tally.failed += len(message.keys)
            break  # the receiver is down or refusing: the rest wait for the next run
        tally.sent += len(message.keys)
    return tally


def _send(
    receiver: Receiver, message: formats.Message, transport: Transport, deadline: float
) -> Attempt:
    """One message, retried with backoff while that may help and the budget lasts."""
    for number in range(1, ATTEMPTS + 1):
        remaining = deadline - time.monotonic()
        request = formats.request(receiver, message, time.time())
        timeout = urllib3.Timeout(
            connect=min(CONNECT_SECONDS, remaining), read=min(READ_SECONDS, remaining)
        )
        try:
            answer = transport.request(
                "POST", request.url, request.headers, request.body, timeout=timeout
            )
        except TransportError as exc:
            # the description is ours: urllib3's messages name the host and may quote the URL
            kind = type(exc.__cause__).__name__
            if not isinstance(exc.__cause__, NOT_SENT):
                return Attempt("unknown", number, f"no answer ({kind}); not sent again")
            error, retry = f"not sent ({kind})", True
        else:
            error = formats.refusal(receiver.format, answer.status, answer.body)
            if error is None:
                return Attempt("sent", number)
            retry = answer.status == 429 or answer.status >= 500
        pause = BACKOFF_SECONDS * 2 ** (number - 1)
        last = number == ATTEMPTS or time.monotonic() + pause + MIN_ATTEMPT_SECONDS > deadline
        if not retry or last:
            break
        time.sleep(pause)
    return Attempt("pending", number, error)


def _now() -> datetime:
    return datetime.now(UTC)
