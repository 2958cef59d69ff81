"""The models on PostgreSQL: the same files in sql/, written for DuckDB, transpiled by sqlglot.

A build is whole and atomic. In one transaction every model is built as a new relation beside
the live one (`<name>__next`, reading the other new ones), then each live relation is swapped
for its new one by two renames and dropped. Readers see the last build until the commit and the
new one after it, never a mix; a model that fails rolls all of it back, leaving the last good
build. Until the swap the build takes no lock a reader waits on; the swap itself waits for the
readers already running on a relation and holds new ones back for its few milliseconds.
The incremental build is DuckDB's alone: on PostgreSQL every build is a full one, which is
what an incremental build must equal anyway. Then the data tests run, on the same SQL.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg2
import psycopg2.extensions
import sqlglot
from sqlglot import exp

from kps_warehouse.transform.project import (
    SOURCE_SCHEMA,
    SQL_DIR,
    DataTest,
    Model,
    ModelError,
    build_order,
    data_tests,
    one_line,
)
from kps_warehouse.transform.runner import (
    NEXT,
    SAMPLE_ROWS,
    MissingSourceError,
    TestResult,
    TransformResult,
)

OLD = "__old"


def to_postgres(sql: str, renamed: dict[str, str] | None = None) -> str:
    """DuckDB SQL as PostgreSQL's, reading `renamed` relations (schema.name) by their new names."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    for table in tree.find_all(exp.Table):
        new = (renamed or {}).get(f"{table.db}.{table.name}".lower())
        if new:
            table.set("this", exp.to_identifier(new))
    return tree.sql(dialect="postgres")


def transform(
    connection: psycopg2.extensions.connection, sql_dir: Any = SQL_DIR
) -> TransformResult:
    """Builds every model in the database `connection` is open on (see the module's docstring),
    then runs the data tests. Raises ModelError, leaving the last build in place."""
    started = time.perf_counter()
    models = build_order(sql_dir)
    tests = data_tests(models, sql_dir)
    connection.autocommit = False
    try:
        with connection.cursor() as cursor:
            cursor.execute("set local timezone = 'UTC'")
            cursor.execute(f"select to_regclass('{SOURCE_SCHEMA}.failed_tasks') is not null")
            if not cursor.fetchone()[0]:
                raise MissingSourceError
            _build(cursor, models)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("set timezone = 'UTC'")
        results = [_run_test(cursor, test) for test in tests]
    return TransformResult(
        models=[model.relation for model in models],
        tests=results,
        seconds=time.perf_counter() - started,
    )


def _build(cursor: psycopg2.extensions.cursor, models: list[Model]) -> None:
    """Every model as `<name>__next`, then swapped in for the live one (in the caller's
    transaction)."""
    renamed = {model.relation: model.name + NEXT for model in models}
    for model in models:
        cursor.execute(f"create schema if not exists {model.schema}")
        try:
            cursor.execute(
                f"create {model.kind} {model.relation}{NEXT} as {to_postgres(model.sql, renamed)}"
            )
        except (psycopg2.Error, sqlglot.errors.SqlglotError) as error:
            raise ModelError(f"model {model.relation} failed: {one_line(error)}") from error
    for model in models:
        live = _kind_of(cursor, model.relation)
        if live:
            cursor.execute(f"alter {live} {model.relation} rename to {model.name}{OLD}")
        cursor.execute(f"alter {model.kind} {model.relation}{NEXT} rename to {model.name}")
    for model in reversed(models):  # readers first: a view is dropped before what it reads
        live = _kind_of(cursor, f"{model.schema}.{model.name}{OLD}")
        if live:
            cursor.execute(f"drop {live} {model.schema}.{model.name}{OLD} cascade")


def _kind_of(cursor: psycopg2.extensions.cursor, relation: str) -> str | None:
    """'table' or 'view' when `relation` exists."""
    cursor.execute(
        "select case c.relkind when 'v' then 'view' else 'table' end from pg_class as c"
        " where c.oid = to_regclass(%s)",
        [relation],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _run_test(cursor: psycopg2.extensions.cursor, test: DataTest) -> TestResult:
    try:
        sql = to_postgres(test.sql)
        cursor.execute(f"select count(*) from ({sql}) as failing")
        (failures,) = cursor.fetchone()
        sample: list[dict[str, Any]] = []
        if failures:
            cursor.execute(f"select * from ({sql}) as failing limit {SAMPLE_ROWS}")
            columns = [description[0] for description in cursor.description]
            sample = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    except (psycopg2.Error, sqlglot.errors.SqlglotError) as error:
        raise ModelError(
            f"data test {test.name} ({test.declared_in}) could not run: {one_line(error)}"
        ) from error
    return TestResult(name=test.name, severity=test.severity, failures=failures, sample=sample)
