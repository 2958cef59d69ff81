"""P: A's first run and its no-change repeat into PostgreSQL (through COPY), beside the same two
runs into DuckDB, and the ratio of their times."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from harness import A_PROJECTS, A_TASKS, Measured, Report, Row, measure, ratio, simulator

# The server P creates its database on (and drops it after), through its `postgres` database.
SERVER = os.environ.get("KPS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def database() -> Iterator[str]:
    """A new database on SERVER, dropped after: its URL."""
    admin = psycopg2.connect(SERVER)
    admin.autocommit = True
    name = f"kps_bench_{secrets.token_hex(4)}"
    with admin.cursor() as cursor:
        cursor.execute(f"create database {name}")
    try:
        yield f"{SERVER.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"drop database {name} with (force)")
        admin.close()


def section_p(report: Report, tmp: Path) -> None:
    projects = max(1, round(A_PROJECTS * report.scale))
    print(f"P: {projects * A_TASKS:,} tasks into DuckDB and PostgreSQL", flush=True)
    with simulator(projects, A_TASKS) as sim, database() as url:
        ids = sim.info.projects
        runs: dict[str, list[Measured]] = {}
        for name, target in (
            ("DuckDB", {"warehouse": str(tmp / "duckdb" / "warehouse" / "kps.duckdb")}),
            ("PostgreSQL", {"postgres": url}),
        ):
            spec = {"projects": ids, **target}
            workdir = tmp / name.lower()
            runs[name] = [
                measure(sim, f"ours into {name}", "ours", spec, workdir),
                measure(sim, f"ours into {name}, repeat run", "ours", spec, workdir),
            ]
    pairs = zip(runs["DuckDB"], runs["PostgreSQL"], strict=True)
    for (duck, pg), what in zip(pairs, ("first", "repeat"), strict=True):
        slower = ratio(pg.seconds, duck.seconds) if not (duck.error or pg.error) else None
        report.rows += [
            Row("P", duck, f"DuckDB, {what} run"),
            Row("P", pg, "" if slower is None else f"{slower:.1f}x DuckDB's time"),
        ]
