"""Shared fixtures: a real simulator on loopback and a real DuckDB warehouse in a temp folder."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
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


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()
