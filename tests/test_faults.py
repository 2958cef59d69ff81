"""Faults and bad input: each ends loaded, quarantined, or as a clear error; nothing is lost."""

from __future__ import annotations

import pytest

from kps_warehouse.source.auth import TokenAuth
from kps_warehouse.source.client import KpsClient, Project

from .conftest import query, run_cli


def cleared(warehouse) -> int:
    return query(
        warehouse, "select count(*) from kps_raw.failed_tasks where _dlt_valid_to is not null"
    )[0][0]


def last_run(warehouse) -> tuple:
    return query(
        warehouse,
        "select status, error, complete, note, tasks_seen from kps_raw.runs"
        " order by started_at desc limit 1",
    )[0]


@pytest.mark.parametrize(
    ("bad_body", "error"),
    [
        ("html", "page at offset 0 is not JSON (text/html;charset=UTF-8): '<html><head><title>502"),
        ("not_json", "page at offset 0 is not JSON (application/json;charset=UTF-8): 'upstream"),
        ("not_utf8", 'page at offset 0 is not JSON (application/json;charset=UTF-8): \'{"total"'),
        ("truncated", "request failed: ProtocolError: ('Connection broken: IncompleteRead"),
        ("tasks_missing", "page at offset 0: 'tasks' is missing, not a list"),
        ("tasks_not_list", "page at offset 0: 'tasks' is a JSON dict, not a list"),
        ("oversized_page", "page at offset 0 holds 1001 tasks, more than the limit of 1000"),
    ],
)
def test_a_broken_body_fails_the_project_in_one_line_and_clears_nothing(
    simulator, configure, warehouse, capsys, bad_body, error
):
    project_id = simulator.add_project(tasks=20)
    configure()
    assert run_cli("run", "--no-transform") == 0
    simulator.delete_tasks(project_id, n=5)
    simulator.configure(bad_body=bad_body)
    capsys.readouterr()

    assert run_cli("run", "--no-transform", "--log-format", "text") == 1

    status, message, complete, _, _ = last_run(warehouse)
    assert (status, complete) == ("failed", False)
    assert message.startswith(error)
    assert cleared(warehouse) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"kps-warehouse: project {project_id}: {error}")


@pytest.mark.parametrize("bad_body", ["total_missing", "total_negative"])
def test_a_missing_or_impossible_total_does_not_stop_paging(
    simulator, configure, warehouse, bad_body
):
    project_id = simulator.add_project(tasks=2_300)
    simulator.configure(bad_body=bad_body)
    configure()

    assert run_cli("run", "--no-transform") == 0

    expected = {t["task_id"] for t in simulator.tasks(project_id)}
    loaded = {row[0] for row in query(warehouse, "select task_id from kps_raw.failed_tasks")}
    assert loaded == expected
    assert last_run(warehouse)[2] is True


def test_ids_repeated_within_a_page_load_once_and_clear_nothing(simulator, configure, warehouse):
    project_id = simulator.add_project(tasks=30)
    configure(page_size=10)
    assert run_cli("run", "--no-transform") == 0
    simulator.delete_tasks(project_id, n=3)
    simulator.configure(bad_body="duplicate_ids")

    assert run_cli("run", "--no-transform") == 0

    status, _, complete, note, _ = last_run(warehouse)
    assert (status, complete) == ("ok", False)
    assert "the page at offset 0 repeats task ids" in note
    assert cleared(warehouse) == 0
    assert query(
        warehouse, "select count(*) = count(distinct task_id) from kps_raw.failed_tasks"
    ) == [(True,)]


def test_long_strings_control_characters_and_non_ascii_load_unchanged(
    simulator, configure, warehouse
):
    project_id = simulator.add_project(tasks=1)
    base = simulator.tasks(project_id)[0]
    odd = [
        {**base, "task_id": "long", "task_error_msg": "x" * 100_000},
        {**base, "task_id": "control", "task_error_msg": "bell\x07 escape\x1b[31m tab\t nl\n"},
        {**base, "task_id": "unicode", "task_error_msg": "更新公钥失败 — clé publique 🔑"},
    ]
    simulator.add_tasks(project_id, odd)
    configure()

    assert run_cli("run", "--no-transform") == 0

    rows = query(
        warehouse,
        "select task_id, task_error_msg from kps_raw.failed_tasks"
        " where task_id in ('long', 'control', 'unicode') order by task_id",
    )
    assert rows == sorted((t["task_id"], t["task_error_msg"]) for t in odd)


def test_throttling_errors_drops_and_a_shifting_list_lose_nothing(simulator, configure, warehouse):
    projects = [simulator.add_project(tasks=n) for n in (180, 95, 0, 240)]
    before = {p: {t["task_id"] for t in simulator.tasks(p)} for p in projects}
    simulator.configure(
        throttle_rate=0.2, error_rate=0.05, drop_rate=0.02, shift_rate=0.05, retry_after=0.01
    )
    configure(page_size=10)

    assert run_cli("run", "--no-transform") == 0

    statuses = [status for _, _, status in simulator.requests]
    assert statuses.count(429) > 0 and statuses.count(500) > 0 and statuses.count(0) > 0
    for project_id in projects:
        after = {t["task_id"] for t in simulator.tasks(project_id)}
        rows = query(
            warehouse,
            "select task_id, _dlt_valid_to from kps_raw.failed_tasks where project_id = ?",
            [project_id],
        )
        loaded = [task_id for task_id, _ in rows]
        open_ids = {task_id for task_id, valid_to in rows if valid_to is None}
        assert len(loaded) == len(set(loaded))  # nothing doubled
        assert before[project_id] & after <= open_ids  # nothing that stayed listed is lost


def test_a_429_holds_back_every_request_of_the_run_not_only_its_own(simulator):
    projects = [simulator.add_project(tasks=60) for _ in range(4)]
    # Slow pages keep the other projects busy while one waits out its 429.
    simulator.configure(throttle_rate=0.2, retry_after=1, latency_ms=100)
    client = KpsClient(simulator.endpoint, TokenAuth(simulator.token), page_size=10, concurrency=4)

    reads = list(client.read_projects([Project(p, "cn-north-4") for p in projects], "run-1"))

    assert all(read.ok and len(read.batch) == 60 for read in reads)
    log = list(zip(simulator.requests, simulator.request_times, strict=True))
    throttled = [left for (_, _, status), (_, left) in log if status == 429]
    assert throttled
    for at in throttled:
        # Requests already under way may finish (and a thread can slip one in while the 429
        # is being read); none may start later while the API asks us to wait.
        started = [arrived - at for _, (arrived, _) in log if at + 0.2 < arrived < at + 0.8]
        assert started == []


def test_the_environments_proxy_settings_are_honoured(simulator, monkeypatch):
    project = Project(simulator.add_project(tasks=3), "cn-north-4")
    # Nothing listens on port 9: a request sent through this proxy fails.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = KpsClient(simulator.endpoint, TokenAuth(simulator.token), max_retries=0)

    [read] = proxied.read_projects([project], "run-1")

    assert read.error is not None and "ProxyError" in read.error
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = KpsClient(simulator.endpoint, TokenAuth(simulator.token), max_retries=0)
    [read] = direct.read_projects([project], "run-1")
    assert read.ok and read.tasks_seen == 3


def test_a_body_cut_off_midway_is_read_again_before_the_project_fails(simulator):
    project = Project(simulator.add_project(tasks=3), "cn-north-4")
    simulator.configure(bad_body="truncated")
    client = KpsClient(
        simulator.endpoint, TokenAuth(simulator.token), max_retries=2, backoff_seconds=0.01
    )

    [read] = client.read_projects([project], "run-1")

    assert [target for _, target, _ in simulator.requests] == [
        f"/cn-north-4/v3/{project.project_id}/failed-tasks?limit=1000&offset=0"
    ] * 3
    assert read.error is not None
    assert read.error.startswith("request failed: ProtocolError: ('Connection broken:")


def test_regions_take_turns_so_no_one_gateway_gets_every_request(simulator):
    north = [simulator.add_project(region="cn-north-4", tasks=1) for _ in range(3)]
    south = [simulator.add_project(region="cn-south-1", tasks=1) for _ in range(2)]
    client = KpsClient(simulator.endpoint, TokenAuth(simulator.token), concurrency=1)
    projects = [Project(p, "cn-north-4") for p in north] + [Project(p, "cn-south-1") for p in south]

    reads = list(client.read_projects(projects, "run-1"))

    asked = [target.split("/")[3] for _, target, _ in simulator.requests]
    assert asked == [north[0], south[0], north[1], south[1], north[2]]
    assert sorted(r.project.project_id for r in reads if r.ok) == sorted(north + south)
