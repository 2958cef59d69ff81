"""Crashes, overlapping runs, readers during a run, and secrets: real processes, real files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from kps_warehouse import crash_points

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


def history(warehouse: Path) -> list[tuple]:
    """Every version of every task, its start and end as the ordinal of the run that set them:
    comparable between warehouses whose runs started at other times."""
    rows = query(
        warehouse,
        "select project_id, task_id, row_hash, _dlt_valid_from, _dlt_valid_to"
        " from kps_raw.failed_tasks",
    )
    times = sorted({t for row in rows for t in row[3:] if t is not None})
    nth = {t: n for n, t in enumerate(times)}
    return sorted((*row[:3], nth[row[3]], None if row[4] is None else nth[row[4]]) for row in rows)


def run_into(
    warehouse: Path, crash_at: str | None = None, *, transform: bool = False
) -> subprocess.CompletedProcess:
    env = {**os.environ, "DESTINATION__DUCKDB__CREDENTIALS": str(warehouse)}
    if crash_at:
        env[crash_points.ENVIRONMENT_VARIABLE] = crash_at
    command = [CLI, "run"] if transform else [CLI, "run", "--no-transform"]
    return subprocess.run(command, capture_output=True, text=True, env=env)


def runs(warehouse: Path) -> list[tuple]:
    return query(
        warehouse,
        "select project_id, status, tasks_seen, rejected, complete, note from kps_raw.runs"
        " order by started_at, project_id",
    )


@pytest.mark.parametrize("point", crash_points.POINTS)
def test_a_run_killed_at_a_named_point_changes_nothing_published_and_the_next_is_exact(
    simulator, configure, warehouse, tmp_path, point
):
    projects = [simulator.add_project(tasks=n) for n in (2_500, 1_200, 5)]
    configure()
    # Killed before its rows were extracted into a load package, a run is as if it never ran;
    # killed later, as if it had finished. `clean` makes the same runs, none of them killed.
    clean = tmp_path / "clean" / "kps.duckdb"
    extracted = point != "mid-extract"
    for path in (clean, warehouse):
        assert run_into(path).returncode == 0
    before = snapshot(warehouse)
    for project_id in projects:
        simulator.delete_tasks(project_id, n=2)
        simulator.add_tasks(project_id, 3)
    if extracted:
        assert run_into(clean).returncode == 0

    # Only a run that builds the models gets into them (this one builds them all, the first
    # time, beside nothing); the next one builds them again.
    transform = point in ("mid-build", "mid-transform")
    killed = run_into(warehouse, crash_at=point, transform=transform)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert f"kps-warehouse: crash point {point} reached" in killed.stderr
    assert snapshot(warehouse) == before
    simulator.add_tasks(projects[0], 2)  # the API moves on before the next run
    simulator.delete_tasks(projects[1], n=1)
    assert run_into(clean).returncode == 0
    resumed = run_into(warehouse, transform=transform)
    assert resumed.returncode == 0, resumed.stderr
    assert history(warehouse) == history(clean)
    assert runs(warehouse) == runs(clean)
    assert len(history(clean)) == len(before) + 9 + 2
    assert sum(1 for row in history(clean) if row[4] is not None) == 6 + 1
    assert len(runs(clean)) == 3 * (3 if extracted else 2)
    assert list(warehouse.parent.glob("*.tmp")) == []  # a half-published copy is cleaned up
    if transform:  # and so are models made beside the live ones and never put in place
        relations = query(
            warehouse,
            "select table_name from duckdb_tables() union all select view_name from duckdb_views()",
        )
        assert "failure_spikes" in {name for (name,) in relations}
        assert [name for (name,) in relations if name.endswith("__next")] == []


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
