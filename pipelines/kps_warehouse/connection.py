"""Open the warehouse from Python, read-only, at the newest published run.

DuckDB keeps one database instance per file path in a process and hands it to every new
`duckdb.connect(path)` while any connection to that path is still open. A run publishes by
renaming a new file over the old one, so in a notebook kernel that still holds an earlier
connection a "new" `duckdb.connect(path, read_only=True)` keeps reading the file as it was.
`connect()` attaches the file, read-only, to a fresh in-memory database instead: each call reads
the file published at that moment, and connections opened before keep reading theirs.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

# DuckDB's own catalogs, which an attached database cannot be called.
_RESERVED = {"memory", "system", "temp", "main"}


def connect(warehouse: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the newest published run of `warehouse` (by default the
    configured `destination.duckdb.credentials`), with timestamps shown in UTC."""
    path = Path(warehouse).expanduser().absolute() if warehouse else _configured()
    if not path.is_file():
        raise FileNotFoundError(f"no warehouse at {path}: run `kps-warehouse run` first")
    # named as `duckdb.connect(path)` names it, so `kps.marts.…` reads the same either way
    name = path.stem if path.stem.lower() not in _RESERVED else "warehouse"
    con = duckdb.connect()
    try:
        con.execute(f"attach {_literal(str(path))} as {_identifier(name)} (read_only)")
        con.execute(f"use {_identifier(name)}")
        con.execute("set TimeZone = 'UTC'")
    except duckdb.Error:
        con.close()
        raise
    return con


def _configured() -> Path:
    # imported here: reading dlt's configuration imports dlt, which a notebook passing a
    # path does not need
    from kps_warehouse.load import warehouse_path

    return warehouse_path()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
