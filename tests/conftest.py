"""Shared fixtures: a real simulator on loopback and a real DuckDB warehouse in a temp folder,
or a database of its own on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from kps_simulator import Simulator
from kps_warehouse.ops.cli import main
from kps_warehouse.ops.warehouse import Warehouse

# The console script of this venv, for tests that run the command as a scheduler would.
CLI = str(Path(sys.executable).parent / "kps-warehouse")

# 2026-03-01T00:00:00Z: generated history ends here, so every test sees the same dates.
FIXED_NOW_MS = 1_772_323_200_000


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(seed=11, now_ms=FIXED_NOW_MS) as sim:
        yield sim


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A warehouse path in a fresh working directory with no .dlt/ of its own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    # `run` sets dlt's log format for JSON output; this undoes it after each test.
    monkeypatch.setenv("RUNTIME__LOG_FORMAT", "")
    monkeypatch.delenv("RUNTIME__LOG_FORMAT")
    path = tmp_path / "warehouse" / "kps.duckdb"
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(path))
    return path


# The server the PostgreSQL tests create their databases on, through its `postgres` database.
TEST_SERVER = os.environ.get("KPS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def postgres(warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`kps_warehouse.destination = postgres`, into a database of this test's own, dropped after.

    Without a server the test skips, saying how to enable it; under CI it fails instead.
    """
    try:
        admin = psycopg2.connect(TEST_SERVER, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        message = f"no PostgreSQL at {TEST_SERVER} ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI must run the PostgreSQL tests")
        pytest.skip(f"{message}: start one or set KPS_TEST_POSTGRES to enable these tests")
    admin.autocommit = True
    name = f"kps_test_{secrets.token_hex(6)}"
    with admin.cursor() as cursor:
        cursor.execute(f"create database {name}")
    url = f"{TEST_SERVER.rsplit('/', 1)[0]}/{name}"
    monkeypatch.setenv("KPS_WAREHOUSE__DESTINATION", "postgres")
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", url)
    try:
        yield url
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"drop database {name} with (force)")
        admin.close()


@pytest.fixture(params=["duckdb", "postgres"])
def destination(request: pytest.FixtureRequest) -> str:
    """Runs a test on either destination; `query` reads the one configured."""
    if request.param == "postgres":
        request.getfixturevalue("postgres")
    return request.param


@pytest.fixture
def writer(warehouse: Path) -> Path:
    """The private copy runs load into, beside the warehouse (see `ops/warehouse.py`)."""
    return Warehouse(warehouse).writer


@pytest.fixture
def configure(simulator: Simulator, warehouse: Path, monkeypatch: pytest.MonkeyPatch):
    """Points the pipeline at the simulator through the environment, as an operator would."""

    def _configure(*, token: str | None = None, page_size: int | None = None) -> None:
        by_region: dict[str, list[str]] = {}
        for project_id, region in simulator.projects().items():
            by_region.setdefault(region, []).append(project_id)
        monkeypatch.setenv("SOURCES__KPS__ENDPOINT", simulator.endpoint)
        monkeypatch.setenv("SOURCES__KPS__PROJECTS", json.dumps(by_region))
        monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN", token or simulator.token)
        monkeypatch.setenv("SOURCES__KPS__BACKOFF_SECONDS", "0.01")
        if page_size is not None:
            monkeypatch.setenv("SOURCES__KPS__PAGE_SIZE", str(page_size))

    return _configure


def run_cli(*args: str) -> int:
    """`kps-warehouse ARGS` in this process; returns the exit status."""
    return main(list(args))


def text_columns_holding(warehouse: Path, text: str) -> list[str]:
    """The warehouse's text columns, as schema.table.column, that hold `text` in any row."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns"
            " where data_type = 'VARCHAR'"
        ).fetchall()
        return [
            f"{schema}.{table}.{column}"
            for schema, table, column in columns
            if con.execute(
                f'select count(*) from "{schema}"."{table}" where "{column}" like ?',
                [f"%{text}%"],
            ).fetchone()
            != (0,)
        ]


@contextmanager
def writable(warehouse: Path) -> Iterator[Any]:
    """What writes to the configured destination: a connection to the DuckDB file, or an
    autocommit cursor of the PostgreSQL database (see `query`)."""
    if os.environ.get("KPS_WAREHOUSE__DESTINATION") != "postgres":
        with duckdb.connect(str(warehouse)) as con:
            yield con
        return
    con = psycopg2.connect(os.environ["DESTINATION__POSTGRES__CREDENTIALS"])
    con.autocommit = True
    try:
        with con.cursor() as cursor:
            yield cursor
    finally:
        con.close()


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of `sql` (`?` marks a parameter) from the warehouse file, or from the PostgreSQL
    database when that is the configured destination (see the `postgres` fixture)."""
    if os.environ.get("KPS_WAREHOUSE__DESTINATION") == "postgres":
        con = psycopg2.connect(os.environ["DESTINATION__POSTGRES__CREDENTIALS"])
        try:
            with con.cursor() as cursor:
                cursor.execute("set timezone = 'UTC'")
                cursor.execute(sql.replace("?", "%s") if params else sql, params or None)
                return cursor.fetchall()
        finally:
            con.close()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()
