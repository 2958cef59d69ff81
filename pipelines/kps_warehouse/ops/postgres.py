"""The PostgreSQL warehouse: one writer at a time, through an advisory lock.

A PostgreSQL database needs no writer copy: readers see only committed rows (MVCC), and a run's
load commits per dlt job. What a file lock does for DuckDB, a session advisory lock does here:
two runs against one database serialize, the second waiting up to `lock_wait_seconds`. The
server releases the lock when the holding session ends, so a killed run never leaves it held.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from kps_warehouse.ops.warehouse import WarehouseBusy
from kps_warehouse.source.client import ConfigError

PostgresSession = psycopg2.extensions.connection

# The advisory lock's key: any constant shared by every run; it locks one database only.
LOCK_KEY = 0x6B7073  # "kps"
# Every schema a run, the models or the alerts create, dropped by --full-refresh.
OWN_SCHEMAS = ("kps_raw", "kps_raw_staging", "staging", "intermediate", "marts", "alerts")


@dataclass(frozen=True)
class PostgresWarehouse:
    """A database on a PostgreSQL server, named by dlt's resolved credentials."""

    credentials: Any  # dlt_adapter.OptionalPasswordCredentials

    @property
    def location(self) -> str:
        """host:port/database, never the user's password."""
        c = self.credentials
        return f"{c.host}:{c.port}/{c.database}"

    def connect(self, purpose: str = "") -> psycopg2.extensions.connection:
        """An autocommit connection; an unreachable server is a ConfigError naming host:port."""
        name = f"kps-warehouse {purpose} pid {os.getpid()}".replace("  ", " ")
        try:
            connection = psycopg2.connect(
                self.credentials.to_native_representation(), application_name=name
            )
        except psycopg2.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
            # libpq prefixes 'connection to server at "h", port p failed: '; the rest says why
            reason = reason.split(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
            raise ConfigError(
                f"PostgreSQL at {self.location} is unreachable: {reason}"
                " (destination.postgres.credentials)"
            ) from None
        connection.autocommit = True
        return connection

    @contextmanager
    def locked(self, wait_seconds: float) -> Iterator[psycopg2.extensions.connection]:
        """Holds the advisory lock for the block, waiting up to `wait_seconds` for another run;
        yields the session holding it."""
        connection = self.connect("run")
        try:
            deadline = time.monotonic() + wait_seconds
            with connection.cursor() as cursor:
                while True:
                    cursor.execute("select pg_try_advisory_lock(%s)", [LOCK_KEY])
                    if cursor.fetchone()[0]:
                        break
                    if time.monotonic() >= deadline:
                        raise WarehouseBusy(
                            f"warehouse postgres {self.location} is busy:"
                            f" {self._holder(cursor)} holds it"
                            f" (waited {wait_seconds:g} s; kps_warehouse.lock_wait_seconds)"
                        )
                    time.sleep(0.2)
            yield connection
        finally:
            connection.close()  # ends the session, and with it the lock

    @staticmethod
    def _holder(cursor: psycopg2.extensions.cursor) -> str:
        cursor.execute(
            """
            select
                activity.application_name,
                to_char(activity.backend_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            from pg_locks as locks
            inner join pg_stat_activity as activity on activity.pid = locks.pid
            where locks.locktype = 'advisory' and locks.granted and locks.objid = %s
                and locks.database = (
                    select oid from pg_database where datname = current_database()
                )
            """,
            [LOCK_KEY],
        )
        row = cursor.fetchone()
        if not row:
            return "another session"
        return f"{row[0] or 'another session'} since {row[1]}"

    @staticmethod
    def has_raw_tables(connection: psycopg2.extensions.connection) -> bool:
        """Whether a run ever loaded this database (dlt's state lives with the raw tables)."""
        with connection.cursor() as cursor:
            cursor.execute("select to_regclass('kps_raw._dlt_loads') is not null")
            return bool(cursor.fetchone()[0])

    @staticmethod
    def drop(connection: psycopg2.extensions.connection) -> None:
        """Drops every schema this project made (the caller holds the lock)."""
        with connection.cursor() as cursor:
            for schema in OWN_SCHEMAS:
                cursor.execute(f"drop schema if exists {schema} cascade")
