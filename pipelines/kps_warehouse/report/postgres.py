"""The report from PostgreSQL: the marts (and the runs) copied into a DuckDB file, then the same
notebook on it. The notebook's SQL stays DuckDB's, and DuckDB's postgres extension is not
bundled (it is downloaded on first use); COPY out of one snapshot is exact and quick."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb

# The marts the report reads (views copied as tables), and the runs `--project` is checked
# against.
TABLES_SQL = """
select table_schema, table_name from information_schema.tables
where table_schema = 'marts' or (table_schema = 'kps_raw' and table_name = 'runs')
order by 1, 2
"""
# PostgreSQL's column types as DuckDB's; anything else arrives as text.
TYPES = {
    "timestamp with time zone": "timestamptz",
    "date": "date",
    "bigint": "bigint",
    "integer": "integer",
    "double precision": "double",
    "numeric": "double",
    "boolean": "boolean",
}


def snapshot(session: Any, path: Path) -> None:
    """Copies the report's tables, as of one moment, from the database `session` is open on
    into a new DuckDB file at `path`."""
    session.set_session(isolation_level="REPEATABLE READ", readonly=True, autocommit=False)
    try:
        with session.cursor() as cursor, duckdb.connect(str(path)) as con:
            cursor.execute("set local timezone = 'UTC'")
            cursor.execute(TABLES_SQL)
            for schema, table in cursor.fetchall():
                _copy(cursor, con, f"{schema}.{table}")
    finally:
        session.rollback()


def _copy(cursor: Any, con: duckdb.DuckDBPyConnection, relation: str) -> None:
    schema, table = relation.split(".")
    cursor.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = %s and table_name = %s order by ordinal_position",
        [schema, table],
    )
    columns = cursor.fetchall()
    con.execute(f"create schema if not exists {schema}")
    con.execute(
        f"create table {relation} ("
        + ", ".join(f'"{name}" {TYPES.get(kind, "varchar")}' for name, kind in columns)
        + ")"
    )
    with tempfile.TemporaryDirectory(prefix="kps-snapshot-") as folder:
        csv = Path(folder) / "rows.csv"
        with csv.open("w", encoding="utf-8") as handle:
            cursor.copy_expert(
                f"copy (select * from {relation}) to stdout (format csv, header)", handle
            )
        con.execute(f"copy {relation} from '{csv}' (header)")
