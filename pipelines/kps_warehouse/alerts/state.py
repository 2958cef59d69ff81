"""The alert state in the warehouse: `alerts.events` (every event ever found, once) and
`alerts.deliveries` (each event's fate per receiver).

A delivery is `pending` until sent; `sending` while a request for it is in flight, committed
before the request goes out; `sent`; `unknown` when a request may have reached the receiver
but no answer said so (a run killed mid-request, a timeout after the request was written):
never sent again, so an event goes out at most once; `muted` when a mute covered it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from kps_warehouse.ops.warehouse import NO_COMPACTION

from .config import Settings
from .events import Event

SCHEMA = "alerts"

TABLES_SQL = f"""
create schema if not exists {SCHEMA};
create table if not exists {SCHEMA}.events (
    key varchar primary key,
    event varchar not null,
    severity varchar not null,
    project_id varchar not null,
    dimension varchar,
    name varchar,
    day date,
    failures bigint,
    baseline double,
    z_score double,
    summary varchar not null,
    run_id varchar not null,
    found_at timestamptz not null
);
create table if not exists {SCHEMA}.deliveries (
    key varchar not null,
    receiver varchar not null,
    status varchar not null,
    attempts integer not null,
    created_run_id varchar not null,
    created_at timestamptz not null,
    last_attempt_at timestamptz,
    sent_at timestamptz,
    sent_run_id varchar,
    last_error varchar,
    primary key (key, receiver)
);
"""

EVENT_COLUMNS = (
    "key",
    "event",
    "severity",
    "project_id",
    "dimension",
    "name",
    "day",
    "failures",
    "baseline",
    "z_score",
    "summary",
    "run_id",
    "found_at",
)


@contextmanager
def connect(database: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    # the alerts' few rows are no reason to compact the models' tables (see `NO_COMPACTION`)
    con = duckdb.connect(
        str(database), read_only=read_only, config={} if read_only else NO_COMPACTION
    )
    try:
        con.execute("set TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def create(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(TABLES_SQL)


def exists(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables"
            " where table_schema = ? and table_name = 'deliveries'",
            [SCHEMA],
        ).fetchone()[0]
    )


def give_up_interrupted(con: duckdb.DuckDBPyConnection) -> int:
    """Deliveries a killed run left `sending` may have reached their receiver: `unknown`."""
    rows = con.execute(
        f"""
        update {SCHEMA}.deliveries
        set
            status = 'unknown',
            attempts = attempts + 1,
            last_error = 'a run ended while sending it'
        where status = 'sending'
        returning key
        """
    ).fetchall()
    return len(rows)


def known_keys(con: duckdb.DuckDBPyConnection) -> set[str]:
    if not exists(con):
        return set()
    return {key for (key,) in con.execute(f"select key from {SCHEMA}.events").fetchall()}


def record(
    con: duckdb.DuckDBPyConnection,
    events: Sequence[Event],
    settings: Settings,
    run_id: str,
    now: datetime,
) -> int:
    """Records the events not seen before, and a delivery for each receiver that wants an event
    and has none for it yet; returns how many events were new. One transaction."""
    known = known_keys(con)
    new = [event for event in events if event.key not in known]
    con.execute("begin transaction")
    try:
        if new:
            con.executemany(
                f"insert into {SCHEMA}.events ({', '.join(EVENT_COLUMNS)})"
                f" values ({', '.join('?' * len(EVENT_COLUMNS))})",
                [[*astuple(event), run_id, now] for event in new],
            )
        wanted = [
            [event.key, receiver.id, "muted" if settings.muted(event.key, now) else "pending"]
            for event in events
            for receiver in settings.receivers
            if receiver.wants(event.event, event.severity)
        ]
        if wanted:
            con.executemany(
                f"""
                insert into {SCHEMA}.deliveries (key, receiver, status, attempts, created_run_id,
                    created_at)
                select $1, $2, $3, 0, $4, $5
                where not exists (
                    select 1 from {SCHEMA}.deliveries where key = $1 and receiver = $2
                )
                """,
                [[*row, run_id, now] for row in wanted],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return len(new)


def pending(con: duckdb.DuckDBPyConnection, receiver: str) -> list[dict[str, Any]]:
    """The receiver's pending events, oldest first, as stored."""
    return _events(con, "deliveries.status = 'pending'", receiver, [])


def undelivered(
    con: duckdb.DuckDBPyConnection, receiver: str, keys: Sequence[str]
) -> list[dict[str, Any]]:
    """Recorded events among `keys` that the receiver has no delivery of (it was added since)."""
    condition = "deliveries.key is null and events.key in (select unnest($2))"
    return _events(con, condition, receiver, [list(keys)])


def _events(
    con: duckdb.DuckDBPyConnection, condition: str, receiver: str, params: list[Any]
) -> list[dict[str, Any]]:
    if not exists(con):
        return []
    cursor = con.execute(
        f"""
        select events.*
        from {SCHEMA}.events as events
        left join {SCHEMA}.deliveries as deliveries
            on deliveries.key = events.key and deliveries.receiver = $1
        where {condition}
        order by events.found_at, events.key
        """,
        [receiver, *params],
    )
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def stored(events: Iterable[Event], run_id: str, now: datetime) -> list[dict[str, Any]]:
    """Events as `pending` returns them, for those not recorded yet (a dry run's)."""
    return [
        dict(zip(EVENT_COLUMNS, [*astuple(event), run_id, now], strict=True)) for event in events
    ]


def mark(
    con: duckdb.DuckDBPyConnection,
    keys: Sequence[str],
    receiver: str,
    status: str,
    *,
    run_id: str,
    now: datetime,
    error: str | None = None,
    requests: int = 0,
) -> None:
    """Sets the deliveries' status and adds the requests made; `sending` stamps the attempt's
    time, `sent` the run that sent them."""
    con.execute(
        f"""
        update {SCHEMA}.deliveries
        set
            status = $status,
            attempts = attempts + $requests,
            last_attempt_at = case when $status = 'sending' then $now else last_attempt_at end,
            sent_at = case when $status = 'sent' then $now else sent_at end,
            sent_run_id = case when $status = 'sent' then $run_id else sent_run_id end,
            last_error = case when $status = 'sent' then null else coalesce($error, last_error) end
        where receiver = $receiver and key in (select unnest($keys))
        """,
        {
            "status": status,
            "now": now,
            "run_id": run_id,
            "error": error,
            "receiver": receiver,
            "keys": list(keys),
            "requests": requests,
        },
    )


def pending_count(con: duckdb.DuckDBPyConnection, receivers: Sequence[str]) -> int:
    return con.execute(
        f"select count(*) from {SCHEMA}.deliveries"
        " where status = 'pending' and receiver in (select unnest($receivers))",
        {"receivers": list(receivers)},
    ).fetchone()[0]


LISTING_SQL = f"""
select
    coalesce(deliveries.status, 'unrouted') as status,
    deliveries.receiver,
    events.event as kind,
    events.severity,
    events.day,
    events.key,
    events.summary,
    events.found_at,
    deliveries.sent_at,
    coalesce(deliveries.attempts, 0) as attempts,
    deliveries.last_error
from {SCHEMA}.events as events
left join {SCHEMA}.deliveries as deliveries using (key)
order by
    deliveries.status = 'pending' desc,
    events.found_at desc,
    events.key,
    deliveries.receiver
limit $limit
"""


def listing(con: duckdb.DuckDBPyConnection, limit: int) -> list[dict[str, Any]]:
    """Pending deliveries first, then the others, newest event first."""
    if not exists(con):
        return []
    cursor = con.execute(LISTING_SQL, {"limit": limit})
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
