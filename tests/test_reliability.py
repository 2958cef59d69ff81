"""Crashes, overlapping runs, readers during a run, and secrets: real processes, real files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from kps_warehouse import load
from kps_warehouse.ops.warehouse import Warehouse

from .conftest import CLI, query, text_columns_holding


def start_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [CLI, "run", "--no-transform", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def snapshot(warehouse: Path) -> list[tuple]:
    if not warehouse.exists():
        return []
    return query(
        warehouse,
        "select project_id, task_id, row_hash, _dlt_valid_from, _dlt_valid_to"
        " from kps_raw.failed_tasks order by all",
    )


def wait_for_requests(simulator, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(simulator.requests) < n:
        assert time.monotonic() < deadline, "the run never reached the simulator"
        time.sleep(0.005)


@pytest.mark.parametrize("delay_after_extract", [None, 0.0, 0.15, 0.4, 0.6, 0.8, 1.0])
def test_a_run_killed_at_any_point_leaves_before_or_after_and_the_next_completes(
    simulator, configure, warehouse, delay_after_extract
):
    projects = [simulator.add_project(tasks=n) for n in (20_000, 15_000, 5)]
    configure()
    assert subprocess.run([CLI, "run", "--no-transform"], capture_output=True).returncode == 0
    before = snapshot(warehouse)
    for project_id in projects:
        simulator.delete_tasks(project_id, n=2)
        simulator.add_tasks(project_id, 3)
    simulator.reset_counters()

    run = start_run()
    if delay_after_extract is None:
        wait_for_requests(simulator, 3)  # killed in the middle of extraction
    else:
        wait_for_requests(simulator, 2 * 21 + 1)  # every page of every pass was read
        time.sleep(delay_after_extract)  # ... then somewhere in normalize, load or publish
    run.send_signal(signal.SIGKILL)
    run.wait()

    assert snapshot(warehouse) == before or len(snapshot(warehouse)) == len(before) + 9
    assert subprocess.run([CLI, "run", "--no-transform"], capture_output=True).returncode == 0
    rows = query(
        warehouse,
        "select project_id, task_id from kps_raw.failed_tasks where _dlt_valid_to is null",
    )
    assert sorted(rows) == sorted((p, t["task_id"]) for p in projects for t in simulator.tasks(p))
    counts = query(
        warehouse,
        "select count(*), count(distinct (project_id, task_id)) from kps_raw.failed_tasks",
    )
    assert counts == [(len(before) + 9, len(before) + 9)]
    assert query(
        warehouse, "select count(*) from kps_raw.failed_tasks where _dlt_valid_to is not null"
    ) == [(6,)]


def test_rows_a_resumed_load_doubled_are_dropped_and_nothing_else(simulator, configure, warehouse):
    project_id = simulator.add_project(tasks=30)
    good = simulator.tasks(project_id)[0]
    bad = [{**good, "task_id": f"bad-{n}", "task_time": "soon"} for n in range(2)]
    simulator.add_tasks(project_id, bad)
    configure()
    for _ in range(2):  # two loads; the second stands for the one a killed run left behind
        simulator.add_tasks(project_id, 1)
        assert subprocess.run([CLI, "run", "--no-transform"], capture_output=True).returncode == 0
    [first, resumed] = [r[0] for r in query(warehouse, "select load_id from kps_raw._dlt_loads")]
    tables = ("failed_tasks", "runs", "rejected_records")
    with duckdb.connect(str(warehouse)) as con:
        for table in tables:
            # What a job run twice leaves: rows of the resumed load copied once more; and copies
            # of the first load's rows, which only stand in for rows the check must not touch.
            for load_id in (first, resumed):
                con.execute(
                    f"insert into kps_raw.{table} select * from kps_raw.{table}"
                    " where _dlt_load_id = ? limit 2",
                    [load_id],
                )
    planted = {t: query(warehouse, f"select * from kps_raw.{t} order by all") for t in tables}

    with load.load_connection(warehouse) as con:
        load.drop_doubled_rows(con, [resumed])

    after = {t: query(warehouse, f"select * from kps_raw.{t} order by all") for t in tables}
    for table in tables:
        resumed_rows = [r for r in planted[table] if resumed in r]
        first_rows = [r for r in planted[table] if first in r]
        assert [r for r in after[table] if resumed in r] == sorted(set(resumed_rows))
        assert [r for r in after[table] if first in r] == first_rows  # copies left alone
        assert len(set(resumed_rows)) < len(resumed_rows) and len(set(first_rows)) < len(first_rows)


def test_an_overlapping_run_waits_then_exits_with_a_clear_message(
    simulator, configure, warehouse, monkeypatch
):
    simulator.add_project(tasks=200)
    configure(page_size=10)
    simulator.configure(latency_ms=300)
    monkeypatch.setenv("KPS_WAREHOUSE__LOCK_WAIT_SECONDS", "0.5")
    # One request at a time: the first run holds the lock for 21 x 0.3 s, far longer than the
    # second takes to start and give up.
    monkeypatch.setenv("SOURCES__KPS__CONCURRENCY", "1")
    first = start_run()
    wait_for_requests(simulator, 1)

    second = subprocess.run(
        [CLI, "run", "--no-transform", "--log-format", "text"], capture_output=True, text=True
    )

    assert second.returncode == 1
    assert second.stderr.startswith(f"kps-warehouse: warehouse {warehouse} is busy: run pid ")
    assert second.stderr.strip().endswith("(waited 0.5 s; kps_warehouse.lock_wait_seconds)")
    assert len(second.stderr.strip().splitlines()) == 1
    assert first.wait(timeout=60) == 0


def test_a_reader_holding_the_warehouse_neither_fails_a_run_nor_is_broken_by_it(
    simulator, configure, warehouse
):
    project_id = simulator.add_project(tasks=40)
    configure()
    assert subprocess.run([CLI, "run", "--no-transform"], capture_output=True).returncode == 0
    simulator.add_tasks(project_id, 5)

    with duckdb.connect(str(warehouse), read_only=True) as analyst:
        run = subprocess.run([CLI, "run", "--no-transform"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        # The analyst's open connection still reads the warehouse as it was when opened.
        assert analyst.execute("select count(*) from kps_raw.failed_tasks").fetchone() == (40,)

    assert query(warehouse, "select count(*) from kps_raw.failed_tasks") == [(45,)]


SECRETS = {
    "SOURCES__KPS__CREDENTIALS__AUTH_TOKEN": "tok-SECRET-5f1d9c2e",
    "SOURCES__KPS__CREDENTIALS__PASSWORD": "pw-SECRET-8a7b6c",
    "SOURCES__KPS__CREDENTIALS__SECRET_KEY": "sk-SECRET-4e3d2c",
}


@pytest.mark.parametrize("kind", ["token", "password", "ak_sk"])
def test_no_secret_reaches_output_logs_state_or_the_warehouse(
    simulator, configure, warehouse, monkeypatch, tmp_path, kind
):
    simulator.add_project(tasks=25)
    configure()
    monkeypatch.delenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN")
    if kind == "token":
        secret = SECRETS["SOURCES__KPS__CREDENTIALS__AUTH_TOKEN"]
        simulator.add_token(secret)
        monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN", secret)
    elif kind == "password":
        secret = SECRETS["SOURCES__KPS__CREDENTIALS__PASSWORD"]
        simulator.add_iam_user("ops", secret, "acme")
        monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__USER_NAME", "ops")
        monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__DOMAIN_NAME", "acme")
        monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__IAM_ENDPOINT", simulator.url)
        monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__PASSWORD", secret)
    else:
        secret = SECRETS["SOURCES__KPS__CREDENTIALS__SECRET_KEY"]
        simulator.add_access_key("AKSECRETTEST", secret)
        monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__ACCESS_KEY", "AKSECRETTEST")
        monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__SECRET_KEY", secret)

    ok = subprocess.run([CLI, "--debug", "run"], capture_output=True, text=True)
    failed = subprocess.run(
        [CLI, "--debug", "run"],
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCES__KPS__PAGE_SIZE": "0"},
    )

    assert ok.returncode == 0, ok.stderr
    assert failed.returncode == 2
    for stream in (ok.stdout, ok.stderr, failed.stdout, failed.stderr):
        assert secret not in stream
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    assert text_columns_holding(warehouse, secret) == []


def test_a_run_stopped_between_extract_and_normalize_is_finished_by_the_next(
    simulator, configure, warehouse, writer
):
    project_id = simulator.add_project(tasks=20)
    configure()
    assert subprocess.run([CLI, "run", "--no-transform"], capture_output=True).returncode == 0
    simulator.delete_tasks(project_id, n=2)
    # What a run killed right after its extract leaves: its writer copy of the warehouse and an
    # extracted, unloaded package.
    shutil.copyfile(warehouse, writer)
    with load.load_connection(writer) as con:
        stopped = load.make_pipeline(Warehouse(warehouse), con)
        stopped.extract(load.make_source(run_id="stopped-run"))
    simulator.add_tasks(project_id, 3)

    run = subprocess.run([CLI, "run", "--no-transform"], capture_output=True, text=True)

    assert run.returncode == 0, run.stderr
    runs = query(warehouse, "select run_id, tasks_seen from kps_raw.runs order by started_at")
    assert [tasks_seen for _, tasks_seen in runs] == [20, 18, 21]
    assert runs[1][0] == "stopped-run"
    assert query(
        warehouse,
        "select count(*), count(_dlt_valid_to) from kps_raw.failed_tasks",
    ) == [(23, 2)]


def test_only_the_newest_dlt_state_is_kept_and_it_is_the_one_dlt_restores(
    simulator, configure, warehouse
):
    project_id = simulator.add_project(tasks=30)
    configure()
    for added in (0, 2, 3):  # each run sees a change, so dlt stores a new state version
        simulator.add_tasks(project_id, added)
        assert subprocess.run([CLI, "run", "--no-transform"], capture_output=True).returncode == 0

    assert query(warehouse, "select count(*) from kps_raw._dlt_pipeline_state") == [(1,)]
    # dlt's working folder lost: the state comes back from the warehouse, the newest one
    load.drop_dlt_state(warehouse)
    with load.load_connection(warehouse) as con:
        restored = load.make_pipeline(Warehouse(warehouse), con)
        restored.sync_destination()
        kept = restored.state["sources"]["kps"]["pages"][project_id]
    assert [size for _, _, size, _ in kept] == [35]
