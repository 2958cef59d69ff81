"""`kps-warehouse run` end to end: real HTTP to the simulator, a real DuckDB file; the tests
taking `destination` run again into a real PostgreSQL database."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from pathlib import Path

import dlt
import pytest

from kps_simulator import Simulator
from kps_warehouse import load

from .conftest import query, run_cli


def tasks_by_id(sim: Simulator, project_id: str) -> dict[str, dict]:
    return {t["task_id"]: t for t in sim.tasks(project_id)}


def loaded(warehouse: Path, project_id: str) -> dict[str, tuple]:
    rows = query(
        warehouse,
        """
        select task_id, failed_at, task_time, keypair_name, _dlt_valid_to
        from kps_raw.failed_tasks where project_id = ?
        """,
        [project_id],
    )
    return {row[0]: (epoch_ms(row[1]), *row[2:]) for row in rows}


def moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def epoch_ms(moment: datetime) -> int:
    assert moment.utcoffset().total_seconds() == 0  # TIMESTAMPTZ, read in UTC
    return round((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)


def started_at(warehouse: Path, nth_run: int):
    rows = query(warehouse, "select distinct started_at from kps_raw.runs order by 1")
    return rows[nth_run][0]


def test_every_task_of_every_project_is_loaded_once_with_its_time(
    simulator, configure, warehouse, destination
):
    big = simulator.add_project(region="cn-north-4", tasks=2_500)
    small = simulator.add_project(region="ap-southeast-1", tasks=17)
    empty = simulator.add_project(region="cn-north-4", tasks=0)
    configure()

    assert run_cli("run", "--no-transform") == 0

    for project_id in (big, small, empty):
        expected = tasks_by_id(simulator, project_id)
        got = loaded(warehouse, project_id)
        assert sorted(got) == sorted(expected)
        for task_id, (failed_ms, task_time, keypair, valid_to) in got.items():
            assert failed_ms == int(expected[task_id]["task_time"])
            assert task_time == expected[task_id]["task_time"]
            assert keypair == expected[task_id]["keypair_name"]
            assert valid_to is None
    regions = dict(
        query(warehouse, "select project_id, min(region) from kps_raw.failed_tasks group by 1")
    )
    assert regions == {big: "cn-north-4", small: "ap-southeast-1"}


@pytest.mark.parametrize(
    ("n", "offsets"),
    [
        (0, [0]),
        (1, [0]),
        (999, [0]),
        (1_000, [0, 1_000]),
        (1_001, [0, 1_000]),
        (2_500, [0, 1_000, 2_000]),
    ],
)
def test_paging_advances_by_items_and_ends_on_a_short_page(
    simulator, configure, warehouse, n, offsets
):
    project_id = simulator.add_project(tasks=n)
    configure()

    assert run_cli("run", "--no-transform") == 0

    assert query(
        warehouse, "select count(*), count(distinct task_id) from kps_raw.failed_tasks"
    ) == [(n, n)]
    requested = [
        int(path.split("offset=")[1].split("&")[0])
        for _, path, status in simulator.requests
        if project_id in path and status == 200
    ]
    # The first pass reads these offsets; a long list whose `total` is capped is read twice.
    assert requested[: len(offsets)] == offsets
    assert len(requested) == (2 * len(offsets) if n > 1_000 else len(offsets))


def test_a_smaller_page_size_pages_further(simulator, configure, warehouse):
    simulator.add_project(tasks=25)
    configure(page_size=10)

    assert run_cli("run", "--no-transform") == 0

    assert query(
        warehouse, "select count(distinct task_id), count(*) from kps_raw.failed_tasks"
    ) == [(25, 25)]
    assert query(warehouse, "select pages, complete from kps_raw.runs") == [(3, True)]


def test_deleted_tasks_are_kept_as_cleared_and_new_ones_are_added(
    simulator, configure, warehouse, destination
):
    project_id = simulator.add_project(tasks=40)
    configure()
    assert run_cli("run", "--no-transform") == 0

    gone = simulator.delete_tasks(project_id, n=3)
    new = simulator.add_tasks(project_id, 2)
    assert run_cli("run", "--no-transform") == 0

    got = loaded(warehouse, project_id)
    assert len(got) == 42
    second_run = started_at(warehouse, 1)
    assert {t["task_id"] for t in gone} == {k for k, v in got.items() if v[3] is not None}
    assert all(got[t["task_id"]][3] == second_run for t in gone)
    assert all(got[t["task_id"]][3] is None for t in new)


def test_a_task_gone_after_the_first_pass_is_cleared_by_the_passes_that_agree(
    simulator, configure, warehouse
):
    project_id = simulator.add_project(tasks=8)
    simulator.total_cap = 4  # `total` proves nothing: the list is read until two passes agree
    configure(page_size=4)
    assert run_cli("run", "--no-transform") == 0
    gone = simulator.tasks(project_id)[0]["task_id"]

    def delete_once(project, size):  # called for each page once its pass has been read
        if gone in {t["task_id"] for t in simulator.tasks(project_id)}:
            simulator.delete_tasks(project_id, ids=[gone])

    simulator.add_tasks(project_id, 1)  # so that the first pass is not the last run's pages
    load.run(warehouse, transform=False, on_page=delete_once)

    got = loaded(warehouse, project_id)
    assert {k for k, v in got.items() if v[3] is not None} == {gone}
    assert got[gone][3] == started_at(warehouse, 1)
    # three passes of three pages: the first still saw the task, the next two agree without it
    assert query(warehouse, "select tasks_seen, pages, complete from kps_raw.runs")[-1] == (
        8,
        9,
        True,
    )


def test_a_repeat_run_with_no_change_adds_no_rows(simulator, configure, warehouse, destination):
    simulator.add_project(tasks=1_200)
    configure()
    assert run_cli("run", "--no-transform") == 0
    before = query(warehouse, "select * from kps_raw.failed_tasks order by task_id")

    assert run_cli("run", "--no-transform") == 0

    assert query(warehouse, "select * from kps_raw.failed_tasks order by task_id") == before
    # nothing to add or clear: no load job for the tasks, so no merge scanned the history
    folder, name = (
        load.postgres_pipeline(load.postgres_warehouse())
        if destination == "postgres"
        else (load.pipelines_dir(warehouse), load.pipeline_name(warehouse))
    )
    last = dlt.attach(name, pipelines_dir=str(folder))
    [package] = last.last_trace.last_load_info.load_packages
    loaded = {job.job_file_info.table_name for job in package.jobs["completed_jobs"]}
    assert "failed_tasks" not in loaded and "runs" in loaded
    # `total` is capped at 1000, so the first run needed two passes to agree; the second read
    # its pages back byte for byte as before: one pass, nothing parsed, the run row still whole.
    assert query(
        warehouse, "select tasks_seen, pages, complete, note from kps_raw.runs order by run_id"
    ) == [(1_200, 4, True, None), (1_200, 2, True, "unchanged since the last complete read")]


def test_a_run_unfreezes_what_it_kept_from_the_garbage_collector(simulator, configure, warehouse):
    simulator.add_project(tasks=10)
    configure()
    frozen = gc.get_freeze_count()

    assert run_cli("run", "--no-transform") == 0

    # A process making many runs (a scheduler, this test session) must not keep their garbage.
    assert gc.get_freeze_count() == frozen


def test_gzipped_answers_load_the_same_and_are_still_unchanged_when_plain_again(
    simulator, configure, warehouse
):
    project_id = simulator.add_project(tasks=1_200)
    simulator.configure(gzip=True)
    configure()

    assert run_cli("run", "--no-transform") == 0
    assert simulator.gzipped == 4  # two passes of two pages: `total` is capped at 1000
    simulator.configure()  # plain again: pages are compared as decoded, not as sent
    assert run_cli("run", "--no-transform") == 0
    assert simulator.gzipped == 4

    current = query(
        warehouse, "select task_id from kps_raw.failed_tasks where _dlt_valid_to is null"
    )
    assert sorted(r[0] for r in current) == sorted(
        t["task_id"] for t in simulator.tasks(project_id)
    )
    assert query(warehouse, "select count(*) from kps_raw.failed_tasks") == [(1_200,)]
    assert query(warehouse, "select tasks_seen, note from kps_raw.runs order by run_id") == [
        (1_200, None),
        (1_200, "unchanged since the last complete read"),
    ]


def test_a_runs_outcome_counts_new_and_changed_versions_apart_from_cleared_tasks(
    simulator, configure, warehouse, destination
):
    project_id = simulator.add_project(tasks=20)
    configure()
    assert run_cli("run", "--no-transform") == 0
    gone, changed = simulator.tasks(project_id)[:3], simulator.tasks(project_id)[3]
    simulator.delete_tasks(project_id, ids=[t["task_id"] for t in [*gone, changed]])
    simulator.add_tasks(project_id, [{**changed, "task_error_msg": "changed"}])
    simulator.add_tasks(project_id, 2)

    assert run_cli("run", "--no-transform") == 0

    [(run_id,)] = query(warehouse, "select max(run_id) from kps_raw.runs")
    [outcome] = load.read_outcomes(query(warehouse, load.OUTCOMES_SQL, [run_id]))
    assert (outcome.tasks_seen, outcome.new_versions, outcome.cleared) == (19, 3, 3)


def test_dlts_working_folder_keeps_no_loaded_files(simulator, configure, warehouse):
    simulator.add_project(tasks=30)
    configure()

    assert run_cli("run", "--no-transform") == 0

    packages = list((warehouse.parent / ".dlt").glob("*/load/loaded/*"))
    assert len(packages) == 1  # dlt's record of the load stays; the data files it loaded go
    assert [p.name for p in packages[0].glob("completed_jobs/*")] == []


def test_rows_wait_for_the_load_in_dlts_working_folder_and_leave_nothing_behind(
    simulator, configure, warehouse
):
    project_id = simulator.add_project(tasks=30)
    configure()
    assert run_cli("run", "--no-transform") == 0
    [working] = (warehouse.parent / ".dlt").glob("*/state.json")
    spilled = working.parent / "spilled_tasks"
    spilled.mkdir()
    (spilled / "chunk-000001.arrow").write_bytes(b"left by a run that was killed")
    simulator.add_tasks(project_id, 2)

    assert run_cli("run", "--no-transform") == 0

    assert not spilled.exists()
    assert query(warehouse, "select count(*) from kps_raw.failed_tasks") == [(32,)]


def test_a_change_on_one_page_reads_the_unchanged_pages_too(simulator, configure, warehouse):
    project_id = simulator.add_project(tasks=2_500)
    configure()
    assert run_cli("run", "--no-transform") == 0

    # The oldest task is served last: only the page at offset 2000 changes, not `total`.
    oldest = simulator.tasks(project_id)[-1]
    simulator.delete_tasks(project_id, ids=[oldest["task_id"]])
    simulator.add_tasks(project_id, [{**oldest, "task_error_msg": "changed"}])
    assert run_cli("run", "--no-transform") == 0

    rows = query(
        warehouse,
        """
        select count(*), count(*) filter (where _dlt_valid_to is null),
            count(*) filter (where task_error_msg = 'changed' and _dlt_valid_to is null)
        from kps_raw.failed_tasks
        """,
    )
    assert rows == [(2_501, 2_500, 1)]
    assert query(warehouse, "select tasks_seen, note from kps_raw.runs order by run_id") == [
        (2_500, None),
        (2_500, None),
    ]


def test_a_project_that_now_lists_nothing_has_every_task_cleared(
    simulator, configure, warehouse, destination
):
    emptied = simulator.add_project(tasks=5)
    kept = simulator.add_project(tasks=4)
    configure()
    assert run_cli("run", "--no-transform") == 0

    simulator.delete_tasks(emptied, n=5)
    assert run_cli("run", "--no-transform") == 0

    second_run = started_at(warehouse, 1)
    assert {v[3] for v in loaded(warehouse, emptied).values()} == {second_run}
    assert {v[3] for v in loaded(warehouse, kept).values()} == {None}


def test_a_task_that_changes_gets_a_new_version_and_keeps_the_old(
    simulator, configure, warehouse, destination
):
    project_id = simulator.add_project(tasks=3)
    configure()
    assert run_cli("run", "--no-transform") == 0

    [task] = simulator.delete_tasks(project_id, n=1)
    simulator.add_tasks(project_id, [{**task, "task_error_msg": "Update public key error, again"}])
    assert run_cli("run", "--no-transform") == 0

    versions = query(
        warehouse,
        """
        select task_error_msg, _dlt_valid_to is null from kps_raw.failed_tasks
        where task_id = ? order by _dlt_valid_from
        """,
        [task["task_id"]],
    )
    assert versions == [(task["task_error_msg"], False), ("Update public key error, again", True)]


def test_a_failed_project_keeps_its_tasks_and_the_run_exits_3(
    simulator, configure, warehouse, destination, monkeypatch, capsys
):
    healthy = simulator.add_project(region="cn-north-4", tasks=6)
    broken = simulator.add_project(region="cn-north-4", tasks=4)
    configure()
    assert run_cli("run", "--no-transform") == 0
    simulator.delete_tasks(healthy, n=1)
    simulator.delete_tasks(broken, n=4)
    # The same project asked for in the wrong region: the gateway answers 403 APIGW.0310.
    monkeypatch.setenv(
        "SOURCES__KPS__PROJECTS", json.dumps({"cn-north-4": [healthy], "cn-east-3": [broken]})
    )
    capsys.readouterr()

    assert run_cli("run", "--no-transform", "--log-format", "text") == 3

    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"kps-warehouse: project {broken}: 403 APIGW.0310 The project is unavailable."
        " (cn-east-3; other projects loaded)"
    ]
    assert {v[3] for v in loaded(warehouse, broken).values()} == {None}
    assert sum(v[3] is not None for v in loaded(warehouse, healthy).values()) == 1
    runs = query(
        warehouse,
        "select project_id, status, error from kps_raw.runs where run_id = "
        "(select max(run_id) from kps_raw.runs) order by status",
    )
    assert runs == [
        (broken, "failed", "403 APIGW.0310 The project is unavailable."),
        (healthy, "ok", None),
    ]


@pytest.mark.parametrize("passes", [1, 2])
def test_bad_records_are_quarantined_with_a_reason_and_the_rest_loads(
    simulator, configure, warehouse, destination, passes
):
    project_id = simulator.add_project(tasks=3)
    good = simulator.tasks(project_id)[0]
    odd = [
        {**good, "task_id": "new-op", "operate_type": "FAILED_ROTATE", "zone": "az1"},
        {**good, "task_id": "numeric-time", "task_time": 1523342130000},
    ]
    bad = [
        {k: v for k, v in good.items() if k != "task_id"},
        {**good, "task_id": "bad-time", "task_time": "yesterday"},
        {**good, "task_id": "bad-type", "server_id": 42},
    ]
    simulator.add_tasks(project_id, odd + bad)
    if passes == 2:  # an inexact `total`: the list is read twice, each bad record kept once
        simulator.total_cap = 3
        configure(page_size=3)
    else:
        configure()

    assert run_cli("run", "--no-transform") == 0

    assert query(warehouse, "select count(*) from kps_raw.failed_tasks") == [(5,)]
    assert query(
        warehouse,
        """
        select operate_type, extra_fields, failed_at from kps_raw.failed_tasks
        where task_id in ('new-op', 'numeric-time') order by task_id
        """,
    ) == [
        ("FAILED_ROTATE", '{"zone": "az1"}', moment(int(good["task_time"]))),
        (good["operate_type"], None, moment(1523342130000)),
    ]
    rejected = [
        (reason, json.loads(payload).get("task_id"), project)
        for reason, payload, project in query(
            warehouse,
            "select reason, payload, project_id from kps_raw.rejected_records order by reason",
        )
    ]
    assert rejected == [
        ("server_id is a JSON int, expected a string or null", "bad-type", project_id),
        ("task_id is missing", None, project_id),
        ('task_time "yesterday" is not epoch milliseconds', "bad-time", project_id),
    ]
    assert query(warehouse, "select tasks_seen, rejected, pages from kps_raw.runs") == [
        (5, 3, {1: 1, 2: 6}[passes])  # 8 records: pages of 3, 3 and 2 in each pass
    ]


def test_the_contracts_region_and_project_ids_keys_configure_a_run(
    simulator, configure, warehouse, monkeypatch
):
    first = simulator.add_project(region="cn-north-4", tasks=4)
    second = simulator.add_project(region="cn-north-4", tasks=2)
    configure()
    monkeypatch.delenv("SOURCES__KPS__PROJECTS")
    monkeypatch.setenv("SOURCES__KPS__REGION", "cn-north-4")
    monkeypatch.setenv("SOURCES__KPS__PROJECT_IDS", json.dumps([first, second]))

    assert run_cli("run", "--no-transform") == 0

    assert sorted(query(warehouse, "select project_id, tasks_seen from kps_raw.runs")) == sorted(
        [(first, 4), (second, 2)]
    )


def test_an_unchanged_project_is_skipped_yet_later_changes_still_clear(
    simulator, configure, warehouse, destination
):
    project_id = simulator.add_project(tasks=30)
    configure()
    assert run_cli("run", "--no-transform") == 0
    assert run_cli("run", "--no-transform") == 0  # nothing changed: nothing to load

    [gone] = simulator.delete_tasks(project_id, n=1)
    assert run_cli("run", "--no-transform") == 0

    third_run = started_at(warehouse, 2)
    assert {k: v[3] for k, v in loaded(warehouse, project_id).items() if v[3]} == {
        gone["task_id"]: third_run
    }
    assert query(warehouse, "select count(*) from kps_raw.failed_tasks") == [(30,)]


def test_a_warehouse_deleted_by_hand_is_loaded_again_in_full(simulator, configure, warehouse):
    simulator.add_project(tasks=12)
    configure()
    assert run_cli("run", "--no-transform") == 0
    warehouse.unlink()  # the dlt working folder with its state stays
    assert (warehouse.parent / ".dlt").is_dir()

    assert run_cli("run", "--no-transform") == 0

    assert query(warehouse, "select count(*) from kps_raw.failed_tasks") == [(12,)]
