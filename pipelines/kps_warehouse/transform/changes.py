"""What changed in the raw tables since the models were last built, and what that changes in each
model: every row, or the rows of some projects and of the days after the previous latest day.

dlt changes a loaded table in two ways only: it appends rows (each load with a later
`_dlt_load_id`) and it retires rows (sets `_dlt_valid_to` to the start of the run that retired
them, later than any earlier run's). So the projects a load touched are those of the rows loaded
or retired since the last build, found by two column scans, whatever the history. Anything else
(a row deleted or edited by hand, a clock set back) breaks the counts kept with the build, and
then everything counts as changed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
from sqlglot import exp

# The state of each raw table at the last build, kept beside the models.
SOURCES_TABLE = "main.model_sources"
# The key every incremental model is rebuilt by, and the column the raw tables carry it in.
PROJECT_KEY = "project_id"


@dataclass(frozen=True)
class Delta:
    """What changed in a relation: every row (`full`), or the rows of `projects` and, when the
    latest day in the data moved on, the rows of the days after `new_days_after`."""

    full: bool = False
    projects: frozenset[str] = frozenset()
    new_days_after: date | None = None

    def __bool__(self) -> bool:
        return self.full or bool(self.projects) or self.new_days_after is not None


FULL = Delta(full=True)
NONE = Delta()


def literal(value: Any) -> str:
    """`value` as a DuckDB SQL literal. A build writes its bookkeeping with literals, not
    parameters: DuckDB's Python client imports pandas the first time a statement has parameters,
    a quarter of a second of every `transform`, which needs nothing of pandas."""
    if isinstance(value, str):  # by hand: sqlglot takes 30 ms for a list of a thousand projects
        return "'" + value.replace("'", "''") + "'"
    return exp.convert(value).sql(dialect="duckdb")


def merged(deltas: Iterable[Delta]) -> Delta:
    """What changed in a relation that reads relations with these changes, row for row."""
    deltas = [delta for delta in deltas if delta]
    if any(delta.full for delta in deltas):
        return FULL
    days = {delta.new_days_after for delta in deltas if delta.new_days_after is not None}
    if len(days) > 1:
        return FULL
    return Delta(
        projects=frozenset().union(*(delta.projects for delta in deltas)),
        new_days_after=next(iter(days), None),
    )


@dataclass(frozen=True)
class SourceState:
    """What identifies a raw table's contents as dlt changes them (see the module's docstring)."""

    rows: int
    retired: int
    last_load_id: str | None
    last_retired_at: Any

    def token(self) -> str:
        return json.dumps(
            [self.rows, self.retired, self.last_load_id, self.last_retired_at], default=str
        )


def source_delta(
    con: duckdb.DuckDBPyConnection, table: str, columns: set[str], before: SourceState | None
) -> tuple[Delta, SourceState | None]:
    """What changed in the raw table `table` since it was in state `before` (None: never built
    from), and its state now (None when it cannot be told; then it counts as changed whole)."""
    if not {"_dlt_load_id", PROJECT_KEY} <= columns:
        return FULL, None
    retires = "_dlt_valid_to" in columns
    now = SourceState(
        *con.execute(
            f"select count(*), {'count(_dlt_valid_to)' if retires else '0'}, max(_dlt_load_id),"
            f" {'max(_dlt_valid_to)' if retires else 'null'} from {table}"
        ).fetchone()
    )
    if before is None:
        return FULL, now
    if now == before:
        return NONE, now
    loaded_since = f"_dlt_load_id > {literal(before.last_load_id or '')}"
    retired_since = (
        f"_dlt_valid_to > coalesce({literal(before.last_retired_at)}, '-infinity'::timestamptz)"
    )
    condition = f"{loaded_since} or {retired_since}" if retires else loaded_since
    loaded, retired, projects = con.execute(
        f"""
        select
            count(*) filter (where {loaded_since}),
            {f"count(*) filter (where {retired_since})" if retires else "0"},
            list(distinct {PROJECT_KEY})
        from {table}
        where {condition}
        """
    ).fetchone()
    if now.rows != before.rows + loaded or now.retired != before.retired + retired:
        return FULL, now  # rows deleted or changed in another way: nothing can be assumed
    return Delta(projects=frozenset(projects or ())), now


def stored_states(con: duckdb.DuckDBPyConnection) -> dict[str, SourceState]:
    con.execute(
        f"create table if not exists {SOURCES_TABLE} (relation varchar primary key,"
        " rows bigint, retired bigint, last_load_id varchar, last_retired_at timestamptz)"
    )
    return {
        relation: SourceState(*state)
        for relation, *state in con.execute(f"select * from {SOURCES_TABLE}").fetchall()
    }


def store_states(con: duckdb.DuckDBPyConnection, states: dict[str, SourceState | None]) -> None:
    con.execute(f"delete from {SOURCES_TABLE}")
    rows = [
        f"({', '.join(map(literal, [relation, *dataclasses.astuple(state)]))})"
        for relation, state in states.items()
        if state is not None
    ]
    if rows:
        con.execute(f"insert into {SOURCES_TABLE} values {', '.join(rows)}")
