"""The models and data tests under sql/, as dbt lays them out, read and put in build order.

A model is one select statement in ``sql/<schema>/<table>.sql``. The YAML files beside the models
(``sql/<schema>/_*.yml``, dbt's properties files) describe them and declare their data tests
(``data_tests:``: unique, not_null, accepted_values, relationships,
unique_combination_of_columns) and how each is built (``config:``):

- ``materialized``: ``view`` (the default in ``staging/``), ``table`` (elsewhere), or
  ``incremental``: a table whose rows are deleted and inserted again by ``unique_key`` for the
  keys a run changed, and kept for the others.
- ``unique_key``: what an incremental model's rows are rebuilt by (``project_id``).
- ``new_days``: a model whose rows run up to the latest day in the data, by this column. When
  the latest day moves on, an incremental table gains the new days' rows for every key, and
  nothing else of it is rebuilt; ``sql/new_days/<table>.sql`` computes them when the model's
  own inputs' new days do not (zero-filled rolling windows reach back into the days before).
  On a view it tells the data tests that the new days' rows are what changed.
- ``duckdb_settings``: DuckDB settings (name: value) while the model's table is written, whole
  or in part; the defaults again after. Not used on PostgreSQL.

Queries in ``sql/tests/*.sql`` are data tests too. Every test returns the rows that fail it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import duckdb
import sqlglot
import yaml
from sqlglot import exp

from kps_warehouse.transform.changes import PROJECT_KEY, literal

# `sql/` ships in the wheel as this package's data (see pyproject.toml).
SQL_DIR = Path(str(resources.files("kps_warehouse.sql")))
TESTS_DIR = "tests"
NEW_DAYS_DIR = "new_days"
VIEW_SCHEMAS = frozenset({"staging"})
SETTING_NAME = re.compile(r"[a-z_]+")
SOURCE_SCHEMA = "kps_raw"

Kind = Literal["view", "table"]
Severity = Literal["error", "warn"]

_SEVERITY_COMMENT = re.compile(r"^--\s*severity:\s*(\w+)\s*$", re.MULTILINE)
_LOCAL_COMMENT = re.compile(rf"^--\s*local:\s*{PROJECT_KEY}\s*$", re.MULTILINE)
_DUCKDB_LINE = re.compile(r"^LINE (\d+):")
# libyaml's safe loader when PyYAML was built with it: the same documents, several times faster
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ModelError(Exception):
    """The models could not be built or tested; the previous build is left in place."""


@dataclass(frozen=True)
class Model:
    """One .sql file: the view or table it builds, the tables it reads, and for an incremental
    table what its rows are rebuilt by (see the module's docstring)."""

    name: str
    schema: str
    path: Path
    kind: Kind
    depends_on: tuple[str, ...]
    sql: str = dataclasses.field(repr=False)
    unique_key: str | None = None
    new_days: str | None = None
    new_days_sql: str | None = dataclasses.field(default=None, repr=False)
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class DataTest:
    """A query returning the rows that fail one expectation. A `local` test fails on a row for
    what is in that row or in its project's rows only, so it can check a run's changes alone:
    generic tests row by row, or of unique combinations that include the project, and queries
    in sql/tests/ that say so in a `-- local: project_id` line."""

    name: str
    severity: Severity
    sql: str
    declared_in: str
    local: bool = False


def build_order(sql_dir: Path = SQL_DIR) -> list[Model]:
    """Every model under `sql_dir`, each after the models it reads."""
    models = _read_models(sql_dir, _model_properties(sql_dir))
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


def data_tests(models: list[Model], sql_dir: Path = SQL_DIR) -> list[DataTest]:
    """The tests declared in the YAML files, then the queries in sql/tests/, in that order."""
    return _declared_tests(models, sql_dir) + _custom_tests(sql_dir)


def _properties_files(sql_dir: Path) -> list[Path]:
    return sorted(sql_dir.glob("*/*.yml"))


def _model_properties(sql_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each model's YAML entry by name, with the file it is in."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in _properties_files(sql_dir):
        where = label(path, sql_dir)
        for model in _document(path).get("models", []):
            if model["name"] in found:
                raise ModelError(f"{where} describes {model['name']} again")
            found[model["name"]] = (where, model)
    return found


def _document(path: Path) -> dict[str, Any]:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as error:
        raise ModelError(f"{path.name} is not valid YAML: {one_line(error)}") from error


def _read_models(sql_dir: Path, properties: dict[str, tuple[str, dict[str, Any]]]) -> list[Model]:
    paths = sorted(
        path
        for path in sql_dir.glob("*/*.sql")
        if path.parent.name not in (TESTS_DIR, NEW_DAYS_DIR)
        and not path.parent.name.startswith(".")
    )
    models: list[Model] = []
    seen: dict[str, Path] = {}
    with duckdb.connect() as parser:
        for path in paths:
            where = label(path, sql_dir)
            if path.stem in seen:
                raise ModelError(
                    f"model {where} failed: {label(seen[path.stem], sql_dir)} has the same name"
                )
            seen[path.stem] = path
            sql = statement(path)
            schema = path.parent.name
            config = properties.get(path.stem, ("", {}))[1].get("config") or {}
            materialized = config.get("materialized", "view" if schema in VIEW_SCHEMAS else "table")
            if materialized not in ("view", "table", "incremental"):
                raise ModelError(
                    f"model {where}: materialized {materialized!r} is not view|table|incremental"
                )
            unique_key = config.get("unique_key")
            if (materialized == "incremental") != (unique_key == PROJECT_KEY):
                raise ModelError(
                    f"model {where}: an incremental model has unique_key: {PROJECT_KEY}, and"
                    " only an incremental one"
                )
            settings = config.get("duckdb_settings") or {}
            if not isinstance(settings, dict) or not all(
                isinstance(name, str) and SETTING_NAME.fullmatch(name) for name in settings
            ):
                raise ModelError(
                    f"model {where}: duckdb_settings is a mapping of DuckDB setting names to values"
                )
            new_days_path = sql_dir / NEW_DAYS_DIR / path.name
            models.append(
                Model(
                    name=path.stem,
                    schema=schema,
                    path=path,
                    kind="view" if materialized == "view" else "table",
                    depends_on=_tables_read(sql, where, parser),
                    sql=sql,
                    unique_key=unique_key,
                    new_days=config.get("new_days"),
                    new_days_sql=statement(new_days_path) if new_days_path.exists() else None,
                    settings=settings,
                )
            )
    return models


def statement(path: Path) -> str:
    # leading lines are kept so that DuckDB's line numbers match the file
    return path.read_text(encoding="utf-8").rstrip().rstrip(";")


def _tables_read(sql: str, where: str, parser: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    # DuckDB's parser first: its messages are the ones a person writing DuckDB SQL knows
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as error:
        raise ModelError(f"model {where} failed: {one_line(error)}") from error
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ModelError(f"model {where} failed: a model is exactly one select statement")
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as error:
        raise ModelError(
            f"model {where} failed: sqlglot cannot parse it: {one_line(error)}"
        ) from error
    tables, unqualified = tables_in(tree)
    if unqualified:
        name = unqualified[0]
        raise ModelError(
            f"model {where} failed: it reads {name} without a schema; "
            f"write staging.{name}, marts.{name} or {SOURCE_SCHEMA}.{name}"
        )
    return tuple(sorted(tables))


def tables_in(tree: exp.Expression) -> tuple[set[str], list[str]]:
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


def _declared_tests(models: list[Model], sql_dir: Path) -> list[DataTest]:
    relations = {model.name: model.relation for model in models}
    tests: list[DataTest] = []
    for path in _properties_files(sql_dir):
        where = label(path, sql_dir)
        document = _document(path)
        tables: list[tuple[str, dict[str, Any]]] = []
        for source in document.get("sources", []):
            for table in source.get("tables", []):
                tables.append((f"{source['name']}.{table['name']}", table))
        for model in document.get("models", []):
            if model["name"] not in relations:
                raise ModelError(f"{where} describes {model['name']}, which no sql/*/*.sql builds")
            tables.append((relations[model["name"]], model))
        for relation, table in tables:
            specs = [(spec, None) for spec in _tests_of(table, relation, where)]
            for column in table.get("columns", []):
                specs += [(spec, column["name"]) for spec in _tests_of(column, relation, where)]
            tests += [_generic_test(spec, relation, column, where) for spec, column in specs]
    return tests


def _tests_of(entry: dict[str, Any], relation: str, where: str) -> list[Any]:
    if "tests" in entry:
        raise ModelError(f"{where}: {relation} declares tests:, which dbt names data_tests:")
    return entry.get("data_tests") or []


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
    local = kind in ("not_null", "accepted_values") or (
        kind == "unique_combination_of_columns"
        and PROJECT_KEY in arguments["combination_of_columns"]
    )
    return DataTest(name=name, severity=severity, sql=sql, declared_in=where, local=local)


def _custom_tests(sql_dir: Path) -> list[DataTest]:
    tests = []
    for path in sorted((sql_dir / TESTS_DIR).glob("*.sql")):
        sql = statement(path)
        declared = _SEVERITY_COMMENT.search(sql)
        severity = declared.group(1) if declared else "error"
        if severity not in ("error", "warn"):
            raise ModelError(f"{label(path, sql_dir)}: severity is {severity!r}, not error|warn")
        tests.append(
            DataTest(
                name=path.stem,
                severity=severity,
                sql=sql,
                declared_in=label(path, sql_dir),
                local=_LOCAL_COMMENT.search(sql) is not None,
            )
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
    listed = ", ".join(map(literal, values))
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


def label(path: Path, sql_dir: Path) -> str:
    return path.relative_to(sql_dir.parent).as_posix()


def one_line(error: Exception) -> str:
    """DuckDB's message without its multi-line context, keeping the line number it points at."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    position = next((m.group(1) for line in lines[1:] if (m := _DUCKDB_LINE.match(line))), None)
    return f"{lines[0]} (line {position})" if position else lines[0]
