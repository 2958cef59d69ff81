"""PostgreSQL as the destination: configuration, errors, the advisory lock and the clean-up of a
resumed load, against a real server (the history itself: the `destination` tests elsewhere)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from kps_warehouse import dlt_adapter
from kps_warehouse.ops.postgres import LOCK_KEY, PostgresWarehouse
from kps_warehouse.transform import postgres as postgres_models
from kps_warehouse.transform.project import SQL_DIR, ModelError, build_order

from .conftest import CLI, query, run_cli

# The issue's own example: no password, which a trusting server does not ask for.
DONE_WHEN = "postgresql://postgres@127.0.0.1:5432/test"


def test_credentials_without_a_password_connect_to_a_trusting_server(monkeypatch, postgres):
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", DONE_WHEN)

    credentials = dlt_adapter.postgres_credentials()

    assert (credentials.host, credentials.port, credentials.database) == ("127.0.0.1", 5432, "test")
    assert credentials.password is None
    session = PostgresWarehouse(credentials).connect()
    with session.cursor() as cursor:
        cursor.execute("select current_database(), current_user")
        assert cursor.fetchone() == ("test", "postgres")
    session.close()


def test_an_unknown_destination_is_a_usage_error(
    simulator, configure, warehouse, monkeypatch, capsys
):
    simulator.add_project(tasks=1)
    configure()
    monkeypatch.setenv("KPS_WAREHOUSE__DESTINATION", "mysql")

    assert run_cli("run", "--no-transform", "--log-format", "text") == 2

    assert capsys.readouterr().err == (
        "kps-warehouse: configuration: kps_warehouse.destination 'mysql' is not one of"
        " duckdb, postgres\n"
    )


def test_an_unreachable_server_is_named_without_its_password(
    simulator, configure, warehouse, monkeypatch
):
    simulator.add_project(tasks=1)
    configure()
    monkeypatch.setenv("KPS_WAREHOUSE__DESTINATION", "postgres")
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS", "postgresql://kps:Pa55word@127.0.0.1:1/kps"
    )

    done = subprocess.run(
        [CLI, "run", "--no-transform", "--log-format", "text"], capture_output=True, text=True
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "kps-warehouse: configuration: PostgreSQL at 127.0.0.1:1/kps is unreachable:"
        " Connection refused (destination.postgres.credentials)\n"
    )


def test_alert_receivers_are_refused_on_postgres_before_anything_is_loaded(
    simulator, configure, postgres, monkeypatch, capsys
):
    simulator.add_project(tasks=3)
    configure()
    receivers = '[{"url": "http://127.0.0.1:9/hook", "format": "json"}]'
    monkeypatch.setenv("KPS_WAREHOUSE__ALERTS__RECEIVERS", receivers)

    assert run_cli("run", "--log-format", "text") == 2

    assert capsys.readouterr().err == (
        "kps-warehouse: configuration: kps_warehouse.alerts.receivers: alerts keep their state"
        " in DuckDB only so far; a run into PostgreSQL takes no receivers\n"
    )
    assert query(None, "select to_regclass('kps_raw.failed_tasks')") == [(None,)]


def test_a_second_run_waits_for_the_advisory_lock_then_gives_up_naming_the_holder(
    simulator, configure, postgres, monkeypatch
):
    simulator.add_project(tasks=3)
    configure()
    monkeypatch.setenv("KPS_WAREHOUSE__LOCK_WAIT_SECONDS", "0.5")
    holder = psycopg2.connect(postgres, application_name="a run on another host")
    with holder.cursor() as cursor:
        cursor.execute("select pg_advisory_lock(%s)", [LOCK_KEY])

    busy = subprocess.run(
        [CLI, "run", "--no-transform", "--log-format", "text"], capture_output=True, text=True
    )
    holder.close()  # the session ends, and the lock with it
    free = subprocess.run(
        [CLI, "run", "--no-transform", "--log-format", "text"], capture_output=True, text=True
    )

    assert busy.returncode == 1
    location = postgres.split("@", 1)[1]  # host:port/database
    assert busy.stderr.startswith(
        f"kps-warehouse: warehouse postgres {location} is busy: a run on another host since 20"
    )
    assert busy.stderr.endswith("Z holds it (waited 0.5 s; kps_warehouse.lock_wait_seconds)\n")
    assert free.returncode == 0, free.stderr
    assert query(None, "select count(*) from kps_raw.failed_tasks") == [(3,)]


def test_status_reads_the_runs_from_postgres(simulator, configure, postgres, capsys):
    project_id = simulator.add_project(region="cn-north-4", tasks=4)
    configure()
    assert run_cli("run", "--no-transform") == 0
    [(started,)] = query(None, "select started_at from kps_raw.runs")
    capsys.readouterr()

    assert run_cli("status", "--log-format", "text") == 0

    location = postgres.split("@", 1)[1]
    at = started.isoformat(timespec="seconds")
    assert capsys.readouterr().out.splitlines() == [
        f"warehouse postgres {location}: last successful load 0 min ago;"
        " its models are not built (`kps-warehouse transform` builds them)",
        f"ok     cn-north-4      {project_id}  last run {at}, last success {at}",
    ]


def test_the_report_reads_the_marts_of_postgres(simulator, configure, postgres, tmp_path):
    first = simulator.add_project(region="cn-north-4", tasks=60)
    second = simulator.add_project(region="ap-southeast-1", tasks=30)
    configure()
    assert run_cli("run") == 0

    assert run_cli("report", "--out", str(tmp_path / "r.html"), "--project", first) == 0

    html = (tmp_path / "r.html").read_text()
    assert first[:8] in html and second[:8] not in html
    assert not (tmp_path / "warehouse" / "kps.duckdb").exists()  # the snapshot was temporary


def test_full_refresh_drops_the_schemas_and_dlts_state_then_loads_anew(
    simulator, configure, postgres
):
    project_id = simulator.add_project(tasks=5)
    configure()
    assert run_cli("run", "--no-transform") == 0
    simulator.delete_tasks(project_id, n=2)
    assert run_cli("run", "--no-transform") == 0

    assert run_cli("run", "--no-transform", "--full-refresh", "--yes") == 0

    # the two cleared tasks are gone with the history; one run row, three current versions
    assert query(None, "select count(*), count(_dlt_valid_to) from kps_raw.failed_tasks") == [
        (3, 0)
    ]
    assert query(None, "select count(*) from kps_raw.runs") == [(1,)]


def comparable(rows: list[tuple], runs: dict[Any, str]) -> list[tuple]:
    """Rows with each run's id and times as its ordinal (the runs into each destination start
    at their own times), numbers as floats (DuckDB's DOUBLE is PostgreSQL's NUMERIC), sorted by
    all but fractions."""

    def value(v: Any) -> Any:
        if isinstance(v, datetime | str) and v in runs:
            return runs[v]
        if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
            return float(v)
        return v

    def key(row: tuple) -> str:  # whole numbers as they are, fractions left out
        return repr(
            [(int(v) if v.is_integer() else "~") if isinstance(v, float) else v for v in row]
        )

    return sorted((tuple(value(v) for v in row) for row in rows), key=key)


def same_rows(ours: list[tuple], theirs: list[tuple]) -> bool:
    """Equal rows, floats within 0.01: hours measured from a run's start (`hours_to_clear`)
    differ by the seconds between the two destinations' runs."""
    return len(ours) == len(theirs) and all(
        len(a) == len(b)
        and all(
            abs(x - y) <= 0.01 if isinstance(x, float) and isinstance(y, float) else x == y
            for x, y in zip(a, b, strict=True)
        )
        for a, b in zip(ours, theirs, strict=True)
    )


def marts_of(warehouse: Path) -> dict[str, list[tuple]]:
    """Every mart's rows of the configured destination, run ids and times as ordinals."""
    runs: dict[Any, str] = {}
    for n, (run_id, started, finished) in enumerate(
        query(
            warehouse,
            "select run_id, min(started_at), max(finished_at) from kps_raw.runs"
            " group by run_id order by run_id",
        )
    ):
        runs.update({run_id: f"run {n}", started: f"run {n} start", finished: f"run {n} end"})
    marts = [model.relation for model in build_order() if model.schema == "marts"]
    return {mart: comparable(query(warehouse, f"select * from {mart}"), runs) for mart in marts}


def test_the_marts_on_postgres_hold_exactly_what_duckdbs_hold(
    simulator, configure, warehouse, postgres, monkeypatch
):
    steady = simulator.add_project(region="cn-north-4", tasks=700)
    changing = simulator.add_project(region="ap-southeast-1", tasks=300)
    simulator.add_tasks(
        changing, [{**simulator.tasks(changing)[0], "task_id": "no-code", "task_error_code": None}]
    )
    configure()
    destinations = ("postgres", "duckdb")
    for destination in destinations:  # the same API, first run
        monkeypatch.setenv("KPS_WAREHOUSE__DESTINATION", destination)
        assert run_cli("run") == 0
    simulator.delete_tasks(changing, n=5)
    simulator.add_tasks(changing, 7)
    simulator.add_tasks(steady, 2)
    marts = {}
    for destination in destinations:  # the same changes, second run
        monkeypatch.setenv("KPS_WAREHOUSE__DESTINATION", destination)
        assert run_cli("run") == 0
        marts[destination] = marts_of(warehouse)

    assert marts["postgres"].keys() == marts["duckdb"].keys()
    for mart, rows in marts["duckdb"].items():
        assert same_rows(marts["postgres"][mart], rows), mart
    fct = marts["postgres"]["marts.fct_failed_tasks"]
    assert len(fct) == 700 + 2 + 301 + 7
    assert len(marts["postgres"]) >= 4 and all(marts["postgres"].values())
    monkeypatch.setenv("KPS_WAREHOUSE__DESTINATION", "postgres")
    column_types = query(
        None,
        "select table_name, column_name, data_type from information_schema.columns"
        " where table_schema = 'marts' and column_name in ('failed_at', 'day', 'failures')"
        " order by 1, 2",
    )
    assert {t for _, _, t in column_types} == {"timestamp with time zone", "date", "bigint"}
    # the analysts' examples run as written on PostgreSQL too (their answers: test_models.py)
    examples = re.findall(r"```sql\n(.*?)```", (SQL_DIR / "README.md").read_text(), re.S)
    assert len(examples) == 11
    for example in examples:
        query(None, example)


def test_a_failed_build_on_postgres_leaves_the_last_good_marts(
    simulator, configure, postgres, tmp_path
):
    project_id = simulator.add_project(tasks=40)
    configure()
    assert run_cli("run") == 0
    before = query(None, "select count(*) from marts.fct_failed_tasks")
    broken = tmp_path / "sql"
    shutil.copytree(SQL_DIR, broken)
    (broken / "marts" / "failure_trend_server.sql").write_text(
        "select no_such_column from kps_raw.runs\n"
    )
    simulator.add_tasks(project_id, 3)
    assert run_cli("run", "--no-transform") == 0
    session = psycopg2.connect(postgres)

    with pytest.raises(ModelError, match=r"^model marts.failure_trend_server failed: column"):
        postgres_models.transform(session, broken)

    session.close()
    assert query(None, "select count(*) from marts.fct_failed_tasks") == before == [(40,)]
    # nothing of the failed build is left behind
    assert query(None, "select count(*) from pg_class where relname ~ '__(next|old)$'") == [(0,)]
