"""What an operator runs unattended: status, run options, discovery, terminal and cron output."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time

from .conftest import CLI, query, run_cli


def test_status_reports_configured_projects_failures_in_a_row_and_max_failures(
    simulator, configure, warehouse, monkeypatch, capsys
):
    healthy = simulator.add_project(tasks=3)
    flaky = simulator.add_project(tasks=2)
    dropped = simulator.add_project(tasks=1)
    configure()
    assert run_cli("run", "--no-transform") == 0
    # `dropped` is no longer configured; `flaky` is, in a region where it is unavailable.
    monkeypatch.setenv(
        "SOURCES__KPS__PROJECTS", json.dumps({"cn-north-4": [healthy], "cn-east-3": [flaky]})
    )
    assert run_cli("run", "--no-transform") == 3
    assert run_cli("run", "--no-transform") == 3
    capsys.readouterr()

    assert run_cli("status", "--max-age", "1h", "--max-failures", "3") == 0

    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"warehouse {warehouse}: last successful load ")
    by_project = {line.split()[2]: line for line in lines[1:3]}
    assert by_project[healthy].startswith("ok ")
    assert ", 2 failed in a row: 403 APIGW.0310 The project is unavailable." in by_project[flaky]
    last_success = query(
        warehouse, "select min(started_at) from kps_raw.runs where project_id = ?", [flaky]
    )[0][0]
    assert f"last success {last_success.isoformat(timespec='seconds')}" in by_project[flaky]
    # history kept, out of the view
    assert lines[3] == f"retired (no longer configured; history kept): {dropped}"
    assert query(
        warehouse, "select count(*) from kps_raw.runs where project_id = ?", [dropped]
    ) == [(1,)]

    assert run_cli("status", "--max-failures", "2") == 1

    assert capsys.readouterr().err == (
        f"kps-warehouse: project {flaky} failed its last 2 runs: 403 APIGW.0310 The project is"
        " unavailable. (cn-east-3; max failures 2)\n"
    )


def test_status_exits_1_when_the_data_is_stale(simulator, configure, warehouse, capsys):
    simulator.add_project(tasks=3)
    configure()
    assert run_cli("run", "--no-transform") == 0
    time.sleep(1.1)
    capsys.readouterr()

    assert run_cli("status", "--max-age", "1s") == 1

    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kps-warehouse: warehouse {warehouse} is stale: last successful load ")


def test_status_of_a_warehouse_never_loaded_is_stale(warehouse):
    assert run_cli("status", "--max-age", "1d") == 1


def test_a_dry_run_counts_and_writes_nothing(simulator, configure, warehouse, capsys):
    simulator.add_project(tasks=1_234)
    configure()

    assert run_cli("run", "--dry-run", "--log-format", "text") == 0

    assert not warehouse.exists()
    assert not (warehouse.parent / ".dlt").exists()
    out = capsys.readouterr().out
    assert "dry run: 1234 tasks listed in 1 projects; nothing written" in out


def test_project_limits_a_run_to_the_named_projects(simulator, configure, warehouse):
    wanted = simulator.add_project(tasks=3)
    simulator.add_project(tasks=4)
    configure()

    assert run_cli("run", "--no-transform", "--project", wanted) == 0

    assert query(warehouse, "select project_id, tasks_seen from kps_raw.runs") == [(wanted, 3)]


def test_an_unknown_project_option_is_a_usage_error(simulator, configure, warehouse):
    simulator.add_project(tasks=3)
    configure()

    assert run_cli("run", "--project", "f" * 32) == 2


def test_full_refresh_needs_yes_without_a_terminal_and_then_rebuilds(
    simulator, configure, warehouse, capsys
):
    project_id = simulator.add_project(tasks=6)
    configure()
    assert run_cli("run", "--no-transform") == 0
    simulator.delete_tasks(project_id, n=2)
    assert run_cli("run", "--no-transform") == 0
    capsys.readouterr()

    assert run_cli("run", "--no-transform", "--full-refresh", "--log-format", "text") == 2
    assert "add --yes to confirm" in capsys.readouterr().err
    assert run_cli("run", "--no-transform", "--full-refresh", "--yes") == 0

    assert query(warehouse, "select count(*), count(_dlt_valid_to) from kps_raw.failed_tasks") == [
        (4, 0)
    ]
    assert query(warehouse, "select count(*) from kps_raw.runs") == [(1,)]


def test_star_discovers_every_project_iam_lists_across_regions(
    simulator, configure, warehouse, monkeypatch
):
    north = simulator.add_project(region="cn-north-4", tasks=5)
    south = simulator.add_project(region="ap-southeast-1", tasks=8)
    configure()
    monkeypatch.delenv("SOURCES__KPS__PROJECTS")
    monkeypatch.setenv("SOURCES__KPS__PROJECT_IDS", "*")
    monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__IAM_ENDPOINT", simulator.url)

    assert run_cli("run", "--no-transform") == 0

    assert sorted(
        query(warehouse, "select project_id, region, tasks_seen from kps_raw.runs")
    ) == sorted([(north, "cn-north-4", 5), (south, "ap-southeast-1", 8)])


def test_a_terminal_run_shows_progress_and_a_summary(simulator, configure, warehouse):
    simulator.add_project(tasks=3_000)
    simulator.configure(latency_ms=150)
    configure(page_size=100)
    leader, follower = pty.openpty()

    run = subprocess.run(
        [CLI, "run", "--no-transform"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        timeout=120,
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)

    text = screen.decode()
    assert run.returncode == 0
    assert "\rreading: 1 projects, " in text
    assert "3000 tasks   3000 new      0 cleared     0 rejected" in text
    assert "1 of 1 projects loaded; 3000 tasks seen, 3000 new or changed, 0 cleared" in text
    assert "{" not in text
