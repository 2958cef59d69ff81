"""`kps-warehouse transform` on a warehouse loaded from the simulator, through the commands."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from kps_warehouse import load
from kps_warehouse.alerts import state as alert_state
from kps_warehouse.ops.warehouse import NO_COMPACTION
from kps_warehouse.transform import runner
from kps_warehouse.transform.runner import SQL_DIR, build_order

from .conftest import query, run_cli


@pytest.fixture
def loaded(simulator, configure, warehouse):
    for region, tasks in (("cn-north-4", 1_500), ("ap-southeast-1", 700), ("cn-north-4", 0)):
        simulator.add_project(region=region, tasks=tasks)
    configure()
    assert run_cli("run") == 0
    return warehouse


def test_trend_sums_equal_the_tasks_with_that_key(simulator, loaded):
    expected = sum(len(simulator.tasks(p)) for p in simulator.projects())
    assert query(
        loaded, "select count(*), count(distinct (project_id, task_id)) from marts.fct_failed_tasks"
    ) == [(expected, expected)]
    for trend, key in (
        ("failure_trend_keypair", "keypair_name"),
        ("failure_trend_server", "server_id"),
        ("failure_trend_error_code", "error_code"),
    ):
        mismatches = query(
            loaded,
            f"""
            with trend as (
                select project_id, {key} as k, sum(failures) as n from marts.{trend} group by 1, 2
            ),
            tasks as (
                select project_id, coalesce({key}, 'UNKNOWN') as k, count(*) as n
                from marts.fct_failed_tasks group by 1, 2
            )
            select * from trend full join tasks using (project_id, k)
            where trend.n is distinct from tasks.n
            """,
        )
        assert mismatches == [], trend


def test_transform_passes_every_data_test_then_fails_naming_a_broken_one(loaded, capsys):
    capsys.readouterr()
    assert run_cli("transform") == 0
    assert "built 24 models and ran 48 data tests" in capsys.readouterr().out

    # A version whose failed_at disagrees with its task_time, planted in the warehouse.
    with duckdb.connect(str(loaded)) as con:
        con.execute(
            """
            insert into kps_raw.failed_tasks
            select * replace ('planted' as task_id, failed_at + interval 1 hour as failed_at)
            from kps_raw.failed_tasks limit 1
            """
        )

    assert run_cli("transform", "--log-format", "text") == 1
    err = capsys.readouterr().err
    assert "data test assert_failed_at_matches_task_time failed: 1 rows" in err
    assert "'task_id': 'planted'" in err


def test_the_operate_types_the_api_documents_pass_quietly(simulator, loaded):
    # the simulator serves the documented types and RUNNING_RESET, the API's own example
    [(types,)] = query(
        loaded, "select list(distinct operate_type order by operate_type) from kps_raw.failed_tasks"
    )
    assert types == [
        "FAILED_BIND",
        "FAILED_REPLACE",
        "FAILED_RESET",
        "FAILED_UNBIND",
        "RUNNING_RESET",
    ]

    result = load.transform_only()

    assert [t.name for t in result.transform.warnings] == []


# --- a run keeps the models nothing changed for ---------------------------------------------

MODELS = build_order()
# Every model but the one table that reads kps_raw.runs: a run always adds runs rows.
KEPT_WHEN_NO_TASK_CHANGED = sorted(m.relation for m in MODELS if m.name != "dim_projects")
INCREMENTAL = sorted(m.relation for m in MODELS if m.unique_key)


def every_model(path):
    return {m.relation: query(path, f"select * from {m.relation} order by all") for m in MODELS}


# Data tests that read kps_raw.runs, or a model made from it (rebuilt or moved by every run).
TESTS_RUN_AGAIN = [
    "accepted_values_runs_status",
    "assert_last_seen_within_its_interval",
    "not_null_dim_projects_project_id",
    "not_null_runs_project_id",
    "not_null_runs_run_id",
    "not_null_runs_started_at",
    "relationships_int_tasks__latest_project_id",
    "relationships_stg_kps__failed_tasks_first_run_id",
    "unique_combination_of_columns_runs",
    "unique_dim_projects_project_id",
]


def test_a_run_that_changed_no_task_keeps_the_task_models_and_they_match_a_full_build(
    loaded, warehouse
):
    result = load.run()

    assert sorted(result.transform.kept) == KEPT_WHEN_NO_TASK_CHANGED
    assert [t.name for t in result.transform.failed] == []
    assert sorted(t.name for t in result.transform.tests if not t.reused) == TESTS_RUN_AGAIN
    assert len(result.transform.reused) == 48 - len(TESTS_RUN_AGAIN)
    [(last_run,)] = query(warehouse, "select max(started_at) from kps_raw.runs")
    assert query(warehouse, "select max(last_seen_at) from marts.fct_failed_tasks") == [(last_run,)]
    kept = every_model(warehouse)
    assert run_cli("transform") == 0  # rebuilds every model
    assert every_model(warehouse) == kept


@pytest.mark.parametrize("change", ["task added", "task cleared"])
def test_a_run_that_changed_a_task_updates_that_project_alone(simulator, loaded, warehouse, change):
    project_id = next(iter(simulator.projects()))
    if change == "task added":  # failed when another did: the latest day stays
        simulator.add_tasks(project_id, [{**simulator.tasks(project_id)[0], "task_id": "new"}])
    else:  # retires a version and adds no row: the count of rows alone would not tell
        simulator.delete_tasks(project_id, n=1)
    other = query(
        warehouse,
        "select * from marts.failure_trend_server where project_id <> ? order by all",
        [project_id],
    )

    result = load.run()

    assert sorted(result.transform.updated) == INCREMENTAL
    assert "marts.dim_projects" not in result.transform.kept
    assert (
        query(
            warehouse,
            "select * from marts.failure_trend_server where project_id <> ? order by all",
            [project_id],
        )
        == other
    )
    built = every_model(warehouse)
    assert run_cli("transform") == 0
    assert every_model(warehouse) == built


def test_a_model_whose_sql_changed_is_rebuilt_with_what_reads_it(loaded, tmp_path):
    sql_dir = Path(shutil.copytree(SQL_DIR, tmp_path / "sql"))
    with (sql_dir / "intermediate" / "int_failures__series.sql").open("a") as sql:
        sql.write("\n-- edited\n")

    result = runner.transform(loaded, sql_dir, keep_unchanged=True)

    rebuilt = set(result.models) - set(result.kept)
    assert rebuilt == {
        "intermediate.int_failures__series",
        "intermediate.int_failures__daily",
        "marts.failure_trend_error_code",
        "marts.failure_trend_keypair",
        "marts.failure_trend_server",
    }


def test_a_model_that_became_a_view_replaces_the_table_it_was(loaded, tmp_path):
    # Warehouses built before the trends were views hold them as tables.
    sql_dir = Path(shutil.copytree(SQL_DIR, tmp_path / "sql"))
    properties = sql_dir / "marts" / "_marts.yml"
    properties.write_text(
        properties.read_text().replace(
            "materialized: view\n      new_days: day", "materialized: table"
        )
    )
    runner.transform(loaded, sql_dir)
    trend = "select * from marts.failure_trend_server order by all"
    as_table = query(loaded, trend)
    kinds = (
        "select table_name, table_type from information_schema.tables"
        " where table_name like 'failure_trend_%' order by all"
    )
    assert {kind for _, kind in query(loaded, kinds)} == {"BASE TABLE"}

    runner.transform(loaded, keep_unchanged=True)

    assert {kind for _, kind in query(loaded, kinds)} == {"VIEW"}
    assert query(loaded, trend) == as_table
    assert len(as_table) > 100


def test_a_data_test_that_failed_runs_again_however_little_changed(loaded, tmp_path):
    sql_dir = Path(shutil.copytree(SQL_DIR, tmp_path / "sql"))
    # Fails on a kept model: every week of a project is a row.
    (sql_dir / "tests" / "assert_no_week_at_all.sql").write_text(
        "select project_id, week_start from marts.failure_weekly\n"
    )
    weeks = query(loaded, "select count(*) from marts.failure_weekly")[0][0]

    for _ in range(2):
        result = runner.transform(loaded, sql_dir, keep_unchanged=True)
        [failed] = result.failed
        assert failed.name == "assert_no_week_at_all"
        assert (failed.failures, failed.reused) == (weeks, False)
    assert "marts.failure_weekly" in result.kept


def test_the_changed_rows_fail_the_tests_that_check_only_them(loaded):
    # Planted as a later load of one project: its rows alone are tested again. One version's
    # failed_at disagrees with its task_time (one test reads the raw versions: through a view)
    # and it has no server (a warning; seven tests read the staged versions: copied once for
    # them all).
    with duckdb.connect(str(loaded)) as con:
        con.execute(
            """
            insert into kps_raw.failed_tasks
            select * replace (
                'planted' as task_id,
                failed_at + interval 1 hour as failed_at,
                null as server_id,
                'planted' as row_hash,
                '9' || _dlt_load_id as _dlt_load_id
            )
            from kps_raw.failed_tasks
            where _dlt_valid_to is null
            limit 1
            """
        )

    result = runner.transform(loaded, keep_unchanged=True)

    assert {t.name: (t.severity, t.failures) for t in result.tests if t.failures} == {
        "assert_failed_at_matches_task_time": ("error", 1),
        "not_null_stg_kps__failed_tasks_server_id": ("warn", 1),
    }


def test_after_every_kind_of_run_the_kept_models_equal_a_full_build(
    simulator, loaded, warehouse, tmp_path
):
    north, south, _ = simulator.projects()
    changes = [
        lambda: None,
        lambda: simulator.add_tasks(south, 2),
        lambda: None,
        lambda: simulator.delete_tasks(north, n=3),
        lambda: simulator.add_tasks(
            north,
            [{**t, "task_error_msg": "changed"} for t in simulator.delete_tasks(south, n=1)],
        ),
        lambda: None,
    ]
    for change in changes:
        change()
        assert run_cli("run") == 0
        full = Path(shutil.copy(warehouse, tmp_path / "full.duckdb"))
        runner.transform(full)  # every model rebuilt from the same raw tables
        assert every_model(warehouse) == every_model(full)


def test_deleted_rows_are_compacted_once_they_are_a_fifth_of_an_incremental_table(tmp_path):
    # DuckDB's compaction rewrote whole row groups of a million tasks after every changed run;
    # the checkpoints of an incremental build compact only once a table holds a fifth deleted.
    [model] = [m for m in build_order() if m.relation == "intermediate.int_tasks__latest"]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("create schema intermediate")
        con.execute(f"create table {model.relation} as select range as project_id from range(100)")

        def after_deleting(below: int) -> int:
            con.execute(f"delete from {model.relation} where project_id < {below}")
            con.execute("checkpoint")
            runner._compact_when_due(con, [model])
            return con.execute("select current_setting('max_vacuum_tasks')").fetchone()[0]

        assert after_deleting(19) == 0  # 19 of 100 rows deleted: left in place
        default = duckdb.connect().execute("select current_setting('max_vacuum_tasks')")
        assert after_deleting(21) == default.fetchone()[0] > 0  # 21: compacted


ROW_GROUP_ROWS = 122_880  # DuckDB's


def _deleted_rows(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        [(deleted,)] = con.execute(
            "select estimated_size - (select count(*) from t) from duckdb_tables()"
            " where table_name = 't'"
        ).fetchall()
    return deleted


@pytest.mark.parametrize(
    ("writes", "deleted_after"),
    [
        (lambda path: load.load_connection(path, compact=False), 2 * ROW_GROUP_ROWS),
        (lambda path: alert_state.connect(path), 2 * ROW_GROUP_ROWS),
        (lambda path: load.load_connection(path), 0),  # a run without models: as DuckDB does
    ],
    ids=["load-before-models", "alerts", "load-alone"],
)
def test_a_runs_other_writes_leave_compacting_to_the_models(tmp_path, writes, deleted_after):
    # Each of these checkpoints the file as it closes. With DuckDB's defaults that compacted
    # the rows the last run's models had deleted, however few (0.2-1.2 s a run at a million
    # tasks); the models compact once it is due.
    path = tmp_path / "writer.duckdb"
    with duckdb.connect(str(path), config=NO_COMPACTION) as con:
        # three row groups, two thirds of each deleted: they would fit in one
        con.execute(f"create table t as select range as i from range({3 * ROW_GROUP_ROWS})")
        con.execute("checkpoint")
        con.execute("delete from t where i % 3 <> 0")
    assert _deleted_rows(path) == 2 * ROW_GROUP_ROWS

    with writes(path) as con:
        con.execute("create table written as select 1 as one")

    assert _deleted_rows(path) == deleted_after


def _compressions(warehouse: Path, table: str, column: str) -> set[str]:
    return {
        compression
        for (compression,) in query(
            warehouse,
            f"select compression from pragma_storage_info('{table}')"
            f" where column_name = '{column}' and segment_type = 'VARCHAR'",
        )
    }


def test_a_models_duckdb_settings_hold_while_its_table_is_written_and_only_then(loaded, tmp_path):
    # two tables of the same 300,000 rows, larger than what DuckDB logs and compresses later:
    # five codes, which DuckDB keeps as a dictionary unless a model's settings say otherwise
    sql_dir = Path(shutil.copytree(SQL_DIR, tmp_path / "sql"))
    codes = "select 'code-' || (i % 5) as code from range(300000) as numbers (i)\n"
    (sql_dir / "marts" / "codes_told.sql").write_text(codes)
    (sql_dir / "marts" / "codes_untold.sql").write_text(codes)
    with (sql_dir / "marts" / "_marts.yml").open("a") as properties:
        properties.write(
            "  - name: codes_told\n    config:\n      duckdb_settings:\n"
            "        disabled_compression_methods: dictionary\n"
        )
    order = [model.relation for model in build_order(sql_dir)]
    assert order.index("marts.codes_told") < order.index("marts.codes_untold")

    runner.transform(loaded, sql_dir)

    assert "Dictionary" not in _compressions(loaded, "marts.codes_told", "code")
    assert _compressions(loaded, "marts.codes_untold", "code") == {"Dictionary"}
