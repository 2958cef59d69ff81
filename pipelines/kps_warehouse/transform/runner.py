"""Build the SQL models in sql/ in dependency order, put them in place in one transaction, then
run the data tests.

`transform` (and a first run) rebuilds every model: each is made and committed beside the live
one, and all of them are swapped in at once (see `_build_beside`). A run (`keep_unchanged`)
rebuilds only what its load changed, in the one transaction: a model whose definition and inputs
are as they were is kept; an incremental model (see `project.py`) deletes and inserts again the
rows of the projects whose raw rows changed, and adds the new days' rows when the latest day in
the data moved on; a plain table is rebuilt whole.
Every build equals a full rebuild from the same raw tables. A data test that passed on exactly
what it reads now is not run again; a local one (see `DataTest`) checks the changed rows only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import sqlglot

from kps_warehouse.crash_points import crash_point
from kps_warehouse.transform import changes
from kps_warehouse.transform.changes import FULL, NONE, PROJECT_KEY, Delta, literal
from kps_warehouse.transform.project import (
    SOURCE_SCHEMA,
    SQL_DIR,
    DataTest,
    Model,
    ModelError,
    Severity,
    build_order,
    data_tests,
    label,
    one_line,
    tables_in,
)

__all__ = [
    "SQL_DIR",
    "MissingSourceError",
    "ModelError",
    "TestResult",
    "TransformResult",
    "build_order",
    "transform",
]

SAMPLE_ROWS = 5
# What each model was last built as (its definition, see `_definitions`), and what the data
# tests last passed on, kept beside the models they describe.
BUILDS_TABLE = "main.model_builds"
PASSES_TABLE = "main.data_test_passes"
# The one-row model of the latest day in the data, whose moves the `new_days` models follow.
LATEST_DAY_MODEL = "intermediate.int_latest_day"
# What DuckDB may hold while it builds a model whole; past it, the large joins and windows spill
# to disk. Its default, 80% of the machine, took a full build at a million tasks to 1.2 GB; this
# keeps a first run of a million tasks under 800 MB (the process holds 280 MB from the load when
# the models start), for about a seventh of a full build's time. Only there: under a limit, the
# scans of an incremental build at four million tasks re-read their columns from disk, several
# times slower (benchmarks/HISTORY.md).
BUILD_MEMORY_LIMIT = "300MB"
# DuckDB's checkpoint compacts a table some of whose rows were deleted by rewriting its row
# groups together ("vacuum"): after a run that deleted ten projects' rows and inserted them
# again, most of int_tasks__latest's row groups, 1.0 s of a run's 1.3 s of models at a million
# tasks, where the checkpoint without it took 0.06 s. An incremental build leaves deleted rows in
# place until they are this share of one of its tables' rows; that run's checkpoint compacts.
COMPACT_AT_DELETED_SHARE = 0.2
# A build that makes every model whole makes each beside the live one, under its name and this
# suffix (as on PostgreSQL), then puts them in place in one transaction.
NEXT = "__next"


class MissingSourceError(ModelError):
    """The raw tables the models read have not been loaded yet."""

    def __init__(self) -> None:
        super().__init__("no data loaded yet: run `kps-warehouse run` first")


@dataclass
class TestResult:
    """How many rows failed a data test, and the first few of them."""

    __test__ = False  # not a pytest test class

    name: str
    severity: Severity
    failures: int
    sample: list[dict[str, Any]]
    reused: bool = False  # not run: it passed before on exactly what it reads now


@dataclass
class TransformResult:
    """Every model in build order, those of them kept unbuilt because nothing they are made of
    changed, those updated for the changed projects and days alone, and the outcome of every
    data test."""

    models: list[str]
    tests: list[TestResult]
    seconds: float
    kept: list[str] = dataclasses.field(default_factory=list)
    updated: list[str] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[TestResult]:
        return [t for t in self.tests if t.severity == "error" and t.failures > 0]

    @property
    def warnings(self) -> list[TestResult]:
        return [t for t in self.tests if t.severity == "warn" and t.failures > 0]

    @property
    def reused(self) -> list[TestResult]:
        return [t for t in self.tests if t.reused]


@dataclass
class Build:
    """What a build did: the models kept and updated, what changed in every relation, and a
    digest of every relation's contents (equal digests, equal contents)."""

    kept: list[str]
    updated: list[str]
    deltas: dict[str, Delta]
    contents: dict[str, str]
    new_days_columns: dict[str, str]
    columns: dict[str, set[str]]


def transform(
    database: str | os.PathLike[str], sql_dir: Path = SQL_DIR, *, keep_unchanged: bool = False
) -> TransformResult:
    """Build the models in the DuckDB file `database`, then run the data tests.

    Every model is rebuilt, unless `keep_unchanged`: then only what changed in the raw tables
    since the last build is rebuilt (see the module's docstring).
    """
    started = time.perf_counter()
    models = build_order(sql_dir)
    tests = data_tests(models, sql_dir)
    if not Path(database).exists():
        raise MissingSourceError
    try:
        con = duckdb.connect(str(database))
    except duckdb.Error as error:
        raise ModelError(f"warehouse {database} cannot be opened: {one_line(error)}") from error
    try:
        # days are UTC days; the models say so themselves, this keeps ad hoc casts honest too
        con.execute("set TimeZone = 'UTC'")
        # the CLI is the only module that prints
        con.execute("set enable_progress_bar = false")
        # tables have no row order to keep; not keeping one lets DuckDB write them in parallel
        con.execute("set preserve_insertion_order = false")
        _check_sources(con, models)
        if keep_unchanged:
            _compact_when_due(con, models)
        passes = _passes(con)
        build = _build(con, models, sql_dir, keep_unchanged)
        results = _run_tests(con, tests, build, passes if keep_unchanged else Passes())
    finally:
        con.close()
    return TransformResult(
        models=[model.relation for model in models],
        tests=results,
        seconds=time.perf_counter() - started,
        kept=build.kept,
        updated=build.updated,
    )


def _check_sources(con: duckdb.DuckDBPyConnection, models: list[Model]) -> None:
    needed = {
        table
        for model in models
        for table in model.depends_on
        if table.startswith(f"{SOURCE_SCHEMA}.")
    }
    if needed - _columns(con).keys():
        raise MissingSourceError


def _compact_when_due(con: duckdb.DuckDBPyConnection, models: list[Model]) -> None:
    """Lets this connection's checkpoints compact tables only when an incremental model's table
    holds `COMPACT_AT_DELETED_SHARE` of deleted rows (see there)."""
    # a table's estimated size counts its deleted rows until they are compacted
    sizes = dict(
        con.execute(
            "select schema_name || '.' || table_name, estimated_size from duckdb_tables()"
            " where database_name = current_database()"
        ).fetchall()
    )
    for model in models:
        if model.unique_key is None or model.relation not in sizes:
            continue
        (rows,) = con.execute(f"select count(*) from {model.relation}").fetchone()
        if sizes[model.relation] > rows / (1 - COMPACT_AT_DELETED_SHARE):
            con.execute("reset max_vacuum_tasks")
            return
    con.execute("set max_vacuum_tasks = 0")


def _build(
    con: duckdb.DuckDBPyConnection, models: list[Model], sql_dir: Path, keep_unchanged: bool
) -> Build:
    definitions = _definitions(models)
    relations = {model.relation for model in models}
    sources = sorted({t for m in models for t in m.depends_on if t not in relations})
    _drop_beside(con, models)  # left by a build killed before it put them in place
    for schema in sorted({model.schema for model in models}):
        con.execute(f"create schema if not exists {schema}")
    con.execute(
        f"create table if not exists {BUILDS_TABLE}"
        " (relation varchar primary key, build_key varchar not null)"
    )
    built = dict(con.execute(f"select relation, build_key from {BUILDS_TABLE}").fetchall())
    columns = _columns(con)
    rebuilt = {
        model.relation
        for model in models
        if not keep_unchanged
        or built.get(model.relation) != definitions[model.relation]
        or model.relation not in columns
    }
    whole = rebuilt == relations
    if whole:
        # every table is written anew, with nothing to compact; DuckDB's checkpoint would still
        # rewrite the partly filled row groups that parallel writes leave behind (those of
        # int_failures__key_days, made by three groupings: 0.2-0.3 s at a million tasks)
        con.execute("set max_vacuum_tasks = 0")
        _build_beside(con, models, sql_dir)
    # what each live relation is, for a whole build, which replaces each once
    live = _relations(con) if whole else {}
    # one transaction: a model that fails leaves every table of the last good build in place,
    # and the record of what each was built from with it
    con.execute("begin transaction")
    try:
        before = changes.stored_states(con)
        deltas: dict[str, Delta] = {}
        contents: dict[str, str] = {}
        states = {}
        for source in sources:
            deltas[source], states[source] = changes.source_delta(
                con, source, columns.get(source, set()), before.get(source)
            )
            # a state that cannot be told is new every time: what reads it is never kept
            contents[source] = states[source].token() if states[source] else uuid.uuid4().hex
        kept, updated = [], []
        for model in models:
            delta = changes.merged(deltas[table] for table in model.depends_on)
            rebuild = model.relation in rebuilt
            try:
                if rebuild or _needs_full(model, delta):
                    latest_before = None if rebuild else _latest_day(con, model, columns)
                    if whole:
                        _put_in_place(con, model, live.get(model.relation))
                    else:
                        was = _relations(con).get(model.relation)
                        _create(con, model, model.relation, model.sql, was)
                        columns[model.relation] = _columns(con, model.relation)
                    delta = _latest_day_moved(con, latest_before) if latest_before else FULL
                elif not delta or model.kind == "view":
                    kept.append(model.relation)
                else:
                    with _settings(con, model.settings):
                        _update(con, model, delta, columns)
                    updated.append(model.relation)
            except duckdb.Error as error:
                raise _failed(model, sql_dir, error) from error
            deltas[model.relation] = delta
            contents[model.relation] = _digest(
                definitions[model.relation], model.depends_on, contents
            )
            con.execute(
                f"insert or replace into {BUILDS_TABLE} values"
                f" ({literal(model.relation)}, {literal(definitions[model.relation])})"
            )
        if whole:  # read once: nothing in the build needed them before
            columns = _columns(con)
        changes.store_states(con, states)
        # the passes were on the last build: with this one, they hold until the tests say so
        con.execute(f"delete from {PASSES_TABLE}")
        crash_point("mid-transform")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    new_days = {model.relation: model.new_days for model in models if model.new_days}
    return Build(kept, updated, deltas, contents, new_days, columns)


def _needs_full(model: Model, delta: Delta) -> bool:
    """A table rebuilt whole: it changed and is not incremental, or something it reads changed
    whole, or the latest day moved on and its rows do not simply grow by the new days."""
    if not delta or model.kind == "view":
        return False
    return (
        model.unique_key is None
        or delta.full
        or (delta.new_days_after is not None and model.new_days is None)
    )


def _build_beside(con: duckdb.DuckDBPyConnection, models: list[Model], sql_dir: Path) -> None:
    """Every model made whole beside the live one (its name + `NEXT`), reading the others' new
    relations, each committed as it is made: DuckDB reads a table made in a transaction not yet
    committed at about half the speed (its scans are not parallel), and in a whole build every
    model reads tables made in it. A model that fails leaves the live relations as they were."""
    beside = {model.relation: model.relation + NEXT for model in models}
    for model in models:
        try:
            # none is there yet: `_build` dropped what a killed build left
            _create(con, model, beside[model.relation], _renamed(model.sql, beside), None)
        except duckdb.Error as error:
            _drop_beside(con, models)
            raise _failed(model, sql_dir, error) from error
        crash_point("mid-build")


def _put_in_place(con: duckdb.DuckDBPyConnection, model: Model, live: str | None) -> None:
    """The model's relation made by `_build_beside` in place of the live one, a `live` table or
    view or none."""
    if model.kind == "view":
        # a view reads the relations it names when it is queried: made again, it reads the live
        # ones, and nothing was saved by making it beside
        _create(con, model, model.relation, model.sql, live)
        con.execute(f"drop view {model.relation}{NEXT}")
        return
    if live:
        con.execute(f"drop {live} {model.relation}")
    con.execute(f"alter table {model.relation}{NEXT} rename to {model.name}")


def _drop_beside(con: duckdb.DuckDBPyConnection, models: list[Model]) -> None:
    relations = _relations(con)
    for model in models:
        kind = relations.get(model.relation + NEXT)
        if kind:
            con.execute(f"drop {kind} {model.relation}{NEXT}")


def _create(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    relation: str,
    sql: str,
    was: str | None,
) -> None:
    """`relation` made whole from `sql` as the model's kind of relation, in place of the table
    or view it `was`, if any."""
    if was and was != model.kind:  # a model made a view from a table, or the other way round
        con.execute(f"drop {was} {relation}")
    with _settings(con, {"memory_limit": BUILD_MEMORY_LIMIT, **model.settings}):
        # on the same line as the model's first line, so that line numbers still match
        con.execute(f"create or replace {model.kind} {relation} as {sql}")


@contextmanager
def _settings(con: duckdb.DuckDBPyConnection, settings: Mapping[str, Any]) -> Iterator[None]:
    """DuckDB's `settings` while a model's rows are written, and its defaults again after."""
    made = []
    try:
        for name, value in settings.items():
            con.execute(f"set {name} = {literal(value)}")
            made.append(name)
        yield
    finally:
        for name in made:
            con.execute(f"reset {name}")


def _relations(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """'table' or 'view' by schema.name, for every relation of the warehouse."""
    return dict(
        con.execute(
            "select schema_name || '.' || table_name, 'table' from duckdb_tables()"
            " where database_name = current_database()"
            " union all select schema_name || '.' || view_name, 'view' from duckdb_views()"
            " where database_name = current_database() and not internal"
        ).fetchall()
    )


def _failed(model: Model, sql_dir: Path, error: duckdb.Error) -> ModelError:
    # a model built beside the live ones reads their new names; the reader knows the live ones
    message = one_line(error).replace(NEXT, "")
    return ModelError(f"model {label(model.path, sql_dir)} failed: {message}")


def _latest_day(
    con: duckdb.DuckDBPyConnection, model: Model, columns: Mapping[str, set[str]]
) -> tuple[Any] | None:
    """The latest day in the data as the last build left it, when `model` is its model."""
    if model.relation != LATEST_DAY_MODEL or model.relation not in columns:
        return None
    return con.execute(f"select day from {model.relation}").fetchone()


def _latest_day_moved(con: duckdb.DuckDBPyConnection, before: tuple[Any]) -> Delta:
    (previous,) = before
    (latest,) = con.execute(f"select day from {LATEST_DAY_MODEL}").fetchone()
    if previous == latest:
        return NONE
    if previous is not None and latest is not None and latest > previous:
        return Delta(new_days_after=previous)
    return FULL  # the latest day went back (tasks deleted by hand, say) or the data is new


def _update(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    delta: Delta,
    columns: Mapping[str, set[str]],
) -> None:
    """The model's rows for the new days and the changed projects, deleted and inserted again."""
    if delta.new_days_after is not None:
        if model.new_days_sql is not None:
            sql, parameters = model.new_days_sql, {"previous_latest_day": delta.new_days_after}
        else:  # every row of a new day comes from its inputs' rows of the new days
            after = f"{model.new_days} > date '{delta.new_days_after.isoformat()}'"
            sql, parameters = (
                _reading(
                    con, model, {t: after for t in model.depends_on if model.new_days in columns[t]}
                ),
                {},
            )
        con.execute(f"insert into {model.relation} by name select * from ({sql}\n)", parameters)
    if delta.projects:
        changed = _changed_in(delta.projects)
        con.execute(
            f"delete from {model.relation} where {changed}",
        )
        filters = {t: changed for t in model.depends_on if PROJECT_KEY in columns[t]}
        sql = _reading(con, model, filters)
        con.execute(f"insert into {model.relation} by name select * from ({sql}\n)")


def _reading(con: duckdb.DuckDBPyConnection, model: Model, filters: Mapping[str, str]) -> str:
    """The model's SQL reading each table in `filters` through a view of its rows that match."""
    views = {}
    for table, condition in filters.items():
        views[table] = "_input__" + table.replace(".", "__")
        con.execute(
            f"create or replace temp view {views[table]} as select * from {table} where {condition}"
        )
    return _renamed(model.sql, views)


def _renamed(sql: str, names: Mapping[str, str]) -> str:
    """`sql` reading each relation of `names` (schema.name) by its new name."""
    if not names:
        return sql
    pattern = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    lowered = {name.lower(): new for name, new in names.items()}
    return re.sub(
        rf"(?<![\w.])({pattern})(?!\w)",
        lambda match: lowered[match.group(1).lower()],
        sql,
        flags=re.IGNORECASE,
    )


def _changed_in(projects: Iterable[str]) -> str:
    """A condition on the rows of these projects that DuckDB checks as it scans them, even
    through views: a list of constants, and not `in (...)`, which DuckDB turns into a join past
    a few values and then reads every row of every column (a tenth of a second at a million
    tasks, against a hundredth)."""
    listed = ", ".join(map(literal, sorted(projects)))
    return f"list_contains([{listed}], {PROJECT_KEY})"


def _definitions(models: list[Model]) -> dict[str, str]:
    """What each model is, as one digest: how it is built and its SQL, and the definitions of
    the models it reads. A model whose definition is as at its last build holds what this one
    would build from the same inputs."""
    definitions: dict[str, str] = {}
    for model in models:  # in build order: what a model reads has its digest already
        statement = "\n".join(
            str(part)
            for part in (
                model.kind,
                model.unique_key,
                model.new_days,
                model.sql,
                model.new_days_sql,
            )
        )
        definitions[model.relation] = _digest(
            statement, [t for t in model.depends_on if t in definitions], definitions
        )
    return definitions


def _digest(statement: str, reads: Iterable[str], keys: Mapping[str, str]) -> str:
    """One digest of a statement and of the digests of the tables it reads. DuckDB's version is
    part of it, as another version may compute the same statement differently."""
    parts = [duckdb.__version__, statement, *(f"{table}={keys[table]}" for table in sorted(reads))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _columns(
    con: duckdb.DuckDBPyConnection, relation: str | None = None
) -> dict[str, set[str]] | set[str]:
    # duckdb_columns() lists views too, and reads far less than information_schema.columns
    rows = con.execute(
        "select schema_name || '.' || table_name, column_name from duckdb_columns()"
        " where database_name = current_database() and not internal"
        + (f" and schema_name || '.' || table_name = {literal(relation)}" if relation else "")
    ).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found.get(relation, set()) if relation else found


@dataclass
class Passes:
    """The data tests that passed on the last build: the digests of the test and what it read
    (see `_test_key`), and of the test alone."""

    keys: set[str] = dataclasses.field(default_factory=set)
    tests: set[str] = dataclasses.field(default_factory=set)


def _passes(con: duckdb.DuckDBPyConnection) -> Passes:
    columns = _columns(con, PASSES_TABLE)
    if columns and "test" not in columns:  # written by a version that kept the keys only
        con.execute(f"drop table {PASSES_TABLE}")
    con.execute(
        f"create table if not exists {PASSES_TABLE} (test_key varchar primary key, test varchar)"
    )
    rows = con.execute(f"select test_key, test from {PASSES_TABLE}").fetchall()
    return Passes({key for key, _ in rows}, {test for _, test in rows})


@dataclass(frozen=True)
class _Plan:
    """How a data test runs this build: `reused` (not run), `scoped` to the changed rows, or
    `whole`; with its key (see `_test_key`), the tables it reads and its SQL's digest."""

    test: DataTest
    key: str | None
    reads: set[str]
    identity: str
    how: Literal["reused", "scoped", "whole"]


def _plan(test: DataTest, build: Build, passes: Passes) -> _Plan:
    key, reads = _test_key(test, build.contents)
    identity = _digest(test.sql, [], {})
    if key is not None and key in passes.keys:
        how = "reused"
    elif test.local and key is not None and identity in passes.tests:
        how = "scoped"
    else:
        how = "whole"
    return _Plan(test, key, reads, identity, how)


def _run_tests(
    con: duckdb.DuckDBPyConnection, tests: list[DataTest], build: Build, passes: Passes
) -> list[TestResult]:
    """Every data test's result. A test that passed on the last build, on what it reads now,
    unchanged, would pass again and is not run; a local test that passed on the last build
    checks only the rows its inputs changed in since (when they changed in part). A test that
    failed or warned always runs again, whole."""
    plans = [_plan(test, build, passes) for test in tests]
    # the tables more than one scoped test reads: their changed rows are copied once for all
    readers = Counter(table for plan in plans if plan.how == "scoped" for table in plan.reads)
    shared = {table for table, count in readers.items() if count > 1}
    results, passing = [], []
    scoped: dict[tuple[str, str], str] = {}
    for plan in plans:
        test = plan.test
        if plan.how == "reused":
            results.append(TestResult(test.name, test.severity, 0, [], reused=True))
        elif plan.how == "scoped":
            sql = _scope(con, test, plan.reads, build, scoped, shared)
            results.append(_run_test(con, test, sql))
        else:
            results.append(_run_test(con, test, test.sql))
        if plan.key is not None and results[-1].failures == 0:
            passing.append([plan.key, plan.identity])
    if passing:  # one statement: executemany would run one per test
        keys, identities = [key for key, _ in passing], [test for _, test in passing]
        con.execute(
            f"insert or ignore into {PASSES_TABLE}"
            f" select unnest({literal(keys)}), unnest({literal(identities)})"
        )
    return results


def _scope(
    con: duckdb.DuckDBPyConnection,
    test: DataTest,
    reads: set[str],
    build: Build,
    scoped: dict[tuple[str, str], str],
    shared: set[str],
) -> str:
    """The local test's SQL reading, of every table with projects, only the rows of the projects
    its inputs changed in and of the new days; the whole test when an input changed whole.
    `scoped` holds the temporary relations of those rows made so far, by table and condition:
    of a table other tests read too (`shared`), a table, read from its relation once for all of
    them; else a view, through which the test reads only its columns of those rows."""
    deltas = [build.deltas.get(table, FULL) for table in reads]
    if any(delta.full for delta in deltas):
        return test.sql
    projects = frozenset().union(*(delta.projects for delta in deltas))
    sql = test.sql
    for table in sorted(reads):
        delta = build.deltas[table]
        if PROJECT_KEY not in build.columns.get(table, ()):
            continue  # read whole: it holds no project's rows (the latest day, say)
        conditions = [_changed_in(projects)] if projects else []
        column = build.new_days_columns.get(table)
        if delta.new_days_after is not None and column:
            conditions.append(f"{column} > date '{delta.new_days_after.isoformat()}'")
        # each condition alone is checked in the scan; `or` would read every column of every row
        selects = [
            f"select * from {table} where {condition}"
            + "".join(f" and not coalesce({before}, false)" for before in conditions[:n])
            for n, condition in enumerate(conditions)
        ]
        union = " union all ".join(selects) or f"select * from {table} where false"
        rows = scoped.get((table, union))
        if rows is None:
            rows = f"_tested_{len(scoped)}__" + table.replace(".", "__")
            kind = "table" if table in shared else "view"
            con.execute(f"create temp {kind} {rows} as {union}")
            scoped[(table, union)] = rows
        sql = _renamed(sql, {table: rows})
    return sql


def _test_key(test: DataTest, contents: dict[str, str]) -> tuple[str | None, set[str]]:
    """The test's SQL and the digests of what it reads, as one digest, and what it reads; None
    when what it reads cannot be told (then it always runs)."""
    try:
        tables, unqualified = tables_in(sqlglot.parse_one(test.sql, read="duckdb"))
    except sqlglot.errors.ParseError:
        return None, set()
    if unqualified or not tables <= contents.keys():
        return None, tables
    return _digest(test.sql, tables, contents), tables


def _run_test(con: duckdb.DuckDBPyConnection, test: DataTest, sql: str) -> TestResult:
    try:
        (failures,) = con.execute(f"select count(*) from ({sql}) as failing").fetchone()
        sample: list[dict[str, Any]] = []
        if failures:
            cursor = con.execute(f"select * from ({sql}) as failing limit {SAMPLE_ROWS}")
            columns = [description[0] for description in cursor.description]
            sample = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    except duckdb.Error as error:
        raise ModelError(
            f"data test {test.name} ({test.declared_in}) could not run: {one_line(error)}"
        ) from error
    return TestResult(name=test.name, severity=test.severity, failures=failures, sample=sample)
