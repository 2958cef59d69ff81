"""Build the SQL models in sql/ in dependency order, in one transaction, then run the data tests.

A model is one select statement in ``sql/<schema>/<table>.sql``. Models in ``staging/`` become
views, all others tables. The tables a model reads are found by parsing it, so the build order
is never kept by hand. Data tests are declared in ``sql/schema.yml`` (unique, not_null,
accepted_values, relationships, unique_combination_of_columns) or written as queries in
``sql/tests/*.sql``; every test returns the rows that fail it.

A build may keep a model as it is when neither its SQL nor anything it reads changed since it
was built (see ``_build_keys``): a run that changed no task leaves the heavy marts alone. A data
test that passed on exactly what it reads now is not run again either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import duckdb
import sqlglot
import yaml
from sqlglot import exp

# `sql/` ships in the wheel as this package's data (see pyproject.toml).
SQL_DIR = Path(str(resources.files("kps_warehouse.sql")))
SCHEMA_FILE = "schema.yml"
TESTS_DIR = "tests"
VIEW_SCHEMAS = frozenset({"staging"})
SOURCE_SCHEMA = "kps_raw"
SAMPLE_ROWS = 5
# What each model was last built from (see `_build_keys`), and what the data tests last passed
# on, kept beside the models they describe.
BUILDS_TABLE = "main.model_builds"
PASSES_TABLE = "main.data_test_passes"

Kind = Literal["view", "table"]
Severity = Literal["error", "warn"]

_SEVERITY_COMMENT = re.compile(r"^--\s*severity:\s*(\w+)\s*$", re.MULTILINE)
_DUCKDB_LINE = re.compile(r"^LINE (\d+):")


class ModelError(Exception):
    """The models could not be built or tested; the previous build is left in place."""


class MissingSourceError(ModelError):
    """The raw tables the models read have not been loaded yet."""

    def __init__(self) -> None:
        super().__init__("no data loaded yet: run `kps-warehouse run` first")


@dataclass(frozen=True)
class Model:
    """One .sql file: the view or table it builds and the tables it reads."""

    name: str
    schema: str
    path: Path
    kind: Kind
    depends_on: tuple[str, ...]
    sql: str = dataclasses.field(repr=False)

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class DataTest:
    """A query returning the rows that fail one expectation."""

    name: str
    severity: Severity
    sql: str
    declared_in: str


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
    changed, and the outcome of every data test (all run, kept models' too)."""

    models: list[str]
    tests: list[TestResult]
    seconds: float
    kept: list[str] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[TestResult]:
        return [t for t in self.tests if t.severity == "error" and t.failures > 0]

    @property
    def warnings(self) -> list[TestResult]:
        return [t for t in self.tests if t.severity == "warn" and t.failures > 0]

    @property
    def reused(self) -> list[TestResult]:
        return [t for t in self.tests if t.reused]


def transform(
    database: str | os.PathLike[str], sql_dir: Path = SQL_DIR, *, keep_unchanged: bool = False
) -> TransformResult:
    """Build the models in the DuckDB file `database`, then run every data test.

    Every model is rebuilt, unless `keep_unchanged`: then a model whose SQL, and the SQL and
    source tables of everything it reads, are as they were at its last build is kept as it is.
    """
    started = time.perf_counter()
    models = build_order(sql_dir)
    tests = _data_tests(models, sql_dir)
    if not Path(database).exists():
        raise MissingSourceError
    try:
        con = duckdb.connect(str(database))
    except duckdb.Error as error:
        raise ModelError(f"warehouse {database} cannot be opened: {_one_line(error)}") from error
    try:
        # days are UTC days; the models say so themselves, this keeps ad hoc casts honest too
        con.execute("set TimeZone = 'UTC'")
        # the CLI is the only module that prints
        con.execute("set enable_progress_bar = false")
        # tables have no row order to keep; not keeping one lets DuckDB write them in parallel
        con.execute("set preserve_insertion_order = false")
        _check_sources(con, models)
        kept, keys = _build(con, models, sql_dir, keep_unchanged)
        results = _run_tests(con, tests, keys, keep_unchanged)
    finally:
        con.close()
    return TransformResult(
        models=[model.relation for model in models],
        tests=results,
        seconds=time.perf_counter() - started,
        kept=kept,
    )


def build_order(sql_dir: Path = SQL_DIR) -> list[Model]:
    """Every model under `sql_dir`, each after the models it reads."""
    models = _read_models(sql_dir)
    by_relation = {model.relation: model for model in models}
    graph = {
        model.relation: [table for table in model.depends_on if table in by_relation]
        for model in models
    }
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        cycle = " -> ".join(error.args[1])
        raise ModelError(f"models read each other in a cycle: {cycle}") from error
    return [by_relation[relation] for relation in order]


def _data_tests(models: list[Model], sql_dir: Path) -> list[DataTest]:
    """The tests declared in schema.yml, then the queries in sql/tests/, in that order."""
    return _declared_tests(models, sql_dir) + _custom_tests(sql_dir)


def _read_models(sql_dir: Path) -> list[Model]:
    paths = sorted(
        path
        for path in sql_dir.glob("*/*.sql")
        if path.parent.name != TESTS_DIR and not path.parent.name.startswith(".")
    )
    models: list[Model] = []
    seen: dict[str, Path] = {}
    with duckdb.connect() as parser:
        for path in paths:
            label = _label(path, sql_dir)
            if path.stem in seen:
                raise ModelError(
                    f"model {label} failed: {_label(seen[path.stem], sql_dir)} has the same name"
                )
            seen[path.stem] = path
            sql = _statement(path)
            schema = path.parent.name
            models.append(
                Model(
                    name=path.stem,
                    schema=schema,
                    path=path,
                    kind="view" if schema in VIEW_SCHEMAS else "table",
                    depends_on=_tables_read(sql, label, parser),
                    sql=sql,
                )
            )
    return models


def _statement(path: Path) -> str:
    # leading lines are kept so that DuckDB's line numbers match the file
    return path.read_text(encoding="utf-8").rstrip().rstrip(";")


def _tables_read(sql: str, label: str, parser: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    # DuckDB's parser first: its messages are the ones a person writing DuckDB SQL knows
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as error:
        raise ModelError(f"model {label} failed: {_one_line(error)}") from error
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ModelError(f"model {label} failed: a model is exactly one select statement")
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as error:
        raise ModelError(
            f"model {label} failed: sqlglot cannot parse it: {_one_line(error)}"
        ) from error
    tables, unqualified = _tables_in(tree)
    if unqualified:
        name = unqualified[0]
        raise ModelError(
            f"model {label} failed: it reads {name} without a schema; "
            f"write staging.{name}, marts.{name} or {SOURCE_SCHEMA}.{name}"
        )
    return tuple(sorted(tables))


def _tables_in(tree: exp.Expression) -> tuple[set[str], list[str]]:
    """The schema.table names a statement reads, and the names it reads without a schema
    (its own CTEs aside)."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables: set[str] = set()
    unqualified: list[str] = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function such as generate_series
        name = table.name.lower()
        if table.db:
            tables.add(f"{table.db.lower()}.{name}")
        elif name not in ctes:
            unqualified.append(name)
    return tables, unqualified


def _check_sources(con: duckdb.DuckDBPyConnection, models: list[Model]) -> None:
    needed = {
        table
        for model in models
        for table in model.depends_on
        if table.startswith(f"{SOURCE_SCHEMA}.")
    }
    present = {
        f"{schema}.{name}"
        for schema, name in con.execute(
            "select table_schema, table_name from information_schema.tables where table_schema = ?",
            [SOURCE_SCHEMA],
        ).fetchall()
    }
    if needed - present:
        raise MissingSourceError


def _build(
    con: duckdb.DuckDBPyConnection, models: list[Model], sql_dir: Path, keep_unchanged: bool
) -> tuple[list[str], dict[str, str]]:
    """Builds the models; returns those kept as they were (only when `keep_unchanged`), and the
    digests of every model and source table (see `_build_keys`)."""
    keys = _build_keys(con, models)
    # one transaction: a model that fails leaves every table of the last good build in place,
    # and the record of what each was built from with it
    con.execute("begin transaction")
    try:
        for schema in sorted({model.schema for model in models}):
            con.execute(f"create schema if not exists {schema}")
        con.execute(
            f"create table if not exists {BUILDS_TABLE}"
            " (relation varchar primary key, build_key varchar not null)"
        )
        built = dict(con.execute(f"select relation, build_key from {BUILDS_TABLE}").fetchall())
        present = _relations(con)
        kept = []
        for model in models:
            key = keys[model.relation]
            if keep_unchanged and built.get(model.relation) == key and model.relation in present:
                kept.append(model.relation)
                continue
            try:
                # on the same line as the model's first line, so that line numbers still match
                con.execute(f"create or replace {model.kind} {model.relation} as {model.sql}")
            except duckdb.Error as error:
                label = _label(model.path, sql_dir)
                raise ModelError(f"model {label} failed: {_one_line(error)}") from error
            con.execute(
                f"insert or replace into {BUILDS_TABLE} values (?, ?)", [model.relation, key]
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return kept, keys


def _build_keys(con: duckdb.DuckDBPyConnection, models: list[Model]) -> dict[str, str]:
    """What each model is made of, as one digest: its kind and SQL, the digests of the models it
    reads, and the state of the source tables it reads. Models are pure functions of those (no
    clock), so a model whose digest matches its last build's would be built the same again.

    A source table's state is its row count, its newest dlt load and how many of its rows were
    retired (`_dlt_valid_to`): a load that adds or retires rows, or a row deleted, changes one
    of them; dlt and this pipeline change a loaded row in no other way.
    """
    relations = {model.relation for model in models}
    sources = sorted({t for m in models for t in m.depends_on if t not in relations})
    keys = {table: json.dumps(_source_state(con, table), default=str) for table in sources}
    for model in models:  # in build order: what a model reads has its digest already
        keys[model.relation] = _digest(f"{model.kind} {model.sql}", model.depends_on, keys)
    return keys


def _digest(statement: str, reads: Iterable[str], keys: Mapping[str, str]) -> str:
    """One digest of a statement and of the digests of the tables it reads. DuckDB's version is
    part of it, as another version may compute the same statement differently."""
    parts = [duckdb.__version__, statement, *(f"{table}={keys[table]}" for table in sorted(reads))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _source_state(con: duckdb.DuckDBPyConnection, table: str) -> tuple[Any, ...]:
    schema, name = table.split(".", 1)
    columns = {
        column
        for (column,) in con.execute(
            "select column_name from information_schema.columns"
            " where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchall()
    }
    if not columns:
        return ("missing",)  # building the model that reads it will say so, naming its file
    measures = ["count(*)"]
    if "_dlt_load_id" in columns:
        measures.append("max(_dlt_load_id)")
    if "_dlt_valid_to" in columns:
        measures.append("count(_dlt_valid_to)")
    return con.execute(f"select {', '.join(measures)} from {table}").fetchone()


def _relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        f"{schema}.{name}"
        for schema, name in con.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_catalog = current_database()"
        ).fetchall()
    }


def _run_tests(
    con: duckdb.DuckDBPyConnection,
    tests: list[DataTest],
    keys: dict[str, str],
    keep_unchanged: bool,
) -> list[TestResult]:
    """Every data test's result. With `keep_unchanged`, a test that passed last time on what it
    reads now, unchanged (same SQL, same digests), would pass again and is not run; a test that
    failed or warned always runs again."""
    con.execute(f"create table if not exists {PASSES_TABLE} (test_key varchar primary key)")
    passed = {key for (key,) in con.execute(f"select test_key from {PASSES_TABLE}").fetchall()}
    results, passing = [], []
    for test in tests:
        key = _test_key(test, keys)
        if keep_unchanged and key in passed:
            results.append(TestResult(test.name, test.severity, 0, [], reused=True))
        else:
            results.append(_run_test(con, test))
        if key is not None and results[-1].failures == 0:
            passing.append(key)
    # only the tests' latest passes: older ones would pile up, one set per change
    con.execute("begin transaction")
    con.execute(f"delete from {PASSES_TABLE}")
    con.executemany(f"insert into {PASSES_TABLE} values (?)", [[key] for key in passing])
    con.execute("commit")
    return results


def _test_key(test: DataTest, keys: dict[str, str]) -> str | None:
    """The test's SQL and the digests of what it reads, as one digest; None when what it reads
    cannot be told (then it always runs)."""
    try:
        tables, unqualified = _tables_in(sqlglot.parse_one(test.sql, read="duckdb"))
    except sqlglot.errors.ParseError:
        return None
    if unqualified or not tables <= keys.keys():
        return None
    return _digest(test.sql, tables, keys)


def _run_test(con: duckdb.DuckDBPyConnection, test: DataTest) -> TestResult:
    try:
        (failures,) = con.execute(f"select count(*) from ({test.sql}) as failing").fetchone()
        sample: list[dict[str, Any]] = []
        if failures:
            cursor = con.execute(f"select * from ({test.sql}) as failing limit {SAMPLE_ROWS}")
            columns = [description[0] for description in cursor.description]
            sample = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    except duckdb.Error as error:
        raise ModelError(
            f"data test {test.name} ({test.declared_in}) could not run: {_one_line(error)}"
        ) from error
    return TestResult(name=test.name, severity=test.severity, failures=failures, sample=sample)


def _declared_tests(models: list[Model], sql_dir: Path) -> list[DataTest]:
    path = sql_dir / SCHEMA_FILE
    if not path.exists():
        return []
    where = _label(path, sql_dir)
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    relations = {model.name: model.relation for model in models}
    tables: list[tuple[str, dict[str, Any]]] = []
    for source in document.get("sources", []):
        for table in source.get("tables", []):
            tables.append((f"{source['name']}.{table['name']}", table))
    for model in document.get("models", []):
        if model["name"] not in relations:
            raise ModelError(f"{where} describes {model['name']}, which no sql/*/*.sql builds")
        tables.append((relations[model["name"]], model))

    tests: list[DataTest] = []
    for relation, table in tables:
        for spec in table.get("tests", []):
            tests.append(_generic_test(spec, relation, None, where))
        for column in table.get("columns", []):
            for spec in column.get("tests", []):
                tests.append(_generic_test(spec, relation, column["name"], where))
    return tests


def _generic_test(
    spec: str | dict[str, Any], relation: str, column: str | None, where: str
) -> DataTest:
    kind, arguments = (spec, {}) if isinstance(spec, str) else next(iter(spec.items()))
    arguments = dict(arguments or {})
    severity = arguments.pop("severity", "error")
    if severity not in ("error", "warn"):
        raise ModelError(
            f"{where}: severity of {kind} on {relation} is {severity!r}, not error|warn"
        )
    render = _GENERIC_TESTS.get(kind)
    if render is None:
        known = ", ".join(sorted(_GENERIC_TESTS))
        raise ModelError(f"{where}: unknown data test {kind!r} on {relation}; known: {known}")
    try:
        sql = render(relation, column, **arguments) if column else render(relation, **arguments)
    except TypeError as error:
        raise ModelError(f"{where}: data test {kind} on {relation}: {error}") from error
    table = relation.split(".", 1)[1]
    name = "_".join(part for part in (kind, table, column) if part)
    return DataTest(name=name, severity=severity, sql=sql, declared_in=where)


def _custom_tests(sql_dir: Path) -> list[DataTest]:
    tests = []
    for path in sorted((sql_dir / TESTS_DIR).glob("*.sql")):
        sql = _statement(path)
        declared = _SEVERITY_COMMENT.search(sql)
        severity = declared.group(1) if declared else "error"
        if severity not in ("error", "warn"):
            raise ModelError(f"{_label(path, sql_dir)}: severity is {severity!r}, not error|warn")
        tests.append(
            DataTest(name=path.stem, severity=severity, sql=sql, declared_in=_label(path, sql_dir))
        )
    return tests


def _not_null(relation: str, column: str) -> str:
    return f"select * from {relation} where {column} is null"


def _unique(relation: str, column: str) -> str:
    return (
        f"select {column}, count(*) as occurrences from {relation} "
        f"where {column} is not null group by {column} having count(*) > 1"
    )


def _accepted_values(relation: str, column: str, values: list[Any]) -> str:
    listed = ", ".join(exp.convert(value).sql(dialect="duckdb") for value in values)
    return (
        f"select {column}, count(*) as occurrences from {relation} "
        f"where {column} not in ({listed}) group by {column}"
    )


def _relationships(relation: str, column: str, to: str, field: str) -> str:
    return (
        f"select child.{column}, count(*) as occurrences from {relation} as child "
        f"where child.{column} is not null and not exists "
        f"(select 1 from {to} as parent where parent.{field} = child.{column}) "
        f"group by child.{column}"
    )


def _unique_combination_of_columns(relation: str, combination_of_columns: list[str]) -> str:
    columns = ", ".join(combination_of_columns)
    return (
        f"select {columns}, count(*) as occurrences from {relation} "
        f"group by {columns} having count(*) > 1"
    )


_GENERIC_TESTS = {
    "not_null": _not_null,
    "unique": _unique,
    "accepted_values": _accepted_values,
    "relationships": _relationships,
    "unique_combination_of_columns": _unique_combination_of_columns,
}


def _label(path: Path, sql_dir: Path) -> str:
    return path.relative_to(sql_dir.parent).as_posix()


def _one_line(error: Exception) -> str:
    """DuckDB's message without its multi-line context, keeping the line number it points at."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    position = next((m.group(1) for line in lines[1:] if (m := _DUCKDB_LINE.match(line))), None)
    return f"{lines[0]} (line {position})" if position else lines[0]
