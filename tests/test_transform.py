"""`kps-warehouse transform` on a warehouse loaded from the simulator, through the commands."""

from __future__ import annotations

import duckdb
import pytest

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


def test_transform_passes_every_data_test_then_fails_naming_a_broken_one(loaded, warehouse, capsys):
    capsys.readouterr()
    assert run_cli("transform") == 0
    assert "built 13 models and ran 47 data tests" in capsys.readouterr().out

    # A version whose failed_at disagrees with its task_time, planted in the writer's copy.
    writer = warehouse.with_name(".kps.writer.duckdb")
    with duckdb.connect(str(writer)) as con:
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
