"""PostgreSQL as the destination: configuration, errors, the advisory lock and the clean-up of a
resumed load, against a real server (the history itself: the `destination` tests elsewhere)."""

from __future__ import annotations

import subprocess

import psycopg2

from kps_warehouse import dlt_adapter, load
from kps_warehouse.ops.postgres import LOCK_KEY, PostgresWarehouse

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


def test_models_on_postgres_are_refused_before_anything_is_loaded(
    simulator, configure, postgres, capsys
):
    simulator.add_project(tasks=3)
    configure()

    assert run_cli("run", "--log-format", "text") == 2

    assert "the models do not run on PostgreSQL yet" in capsys.readouterr().err
    session = psycopg2.connect(postgres)
    with session.cursor() as cursor:
        cursor.execute("select to_regclass('kps_raw.failed_tasks')")
        assert cursor.fetchone() == (None,)
    session.close()


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


def test_rows_a_resumed_load_doubled_are_dropped_from_postgres_and_nothing_else(
    simulator, configure, postgres
):
    project_id = simulator.add_project(tasks=30)
    good = simulator.tasks(project_id)[0]
    simulator.add_tasks(
        project_id, [{**good, "task_id": f"bad-{n}", "task_time": "soon"} for n in range(2)]
    )
    configure()
    for _ in range(2):  # two loads; the second stands for the one a killed run left behind
        simulator.add_tasks(project_id, 1)
        assert run_cli("run", "--no-transform") == 0
    [first, resumed] = [
        r[0] for r in query(None, "select load_id from kps_raw._dlt_loads order by 1")
    ]
    tables = tuple(dlt_adapter.ROW_KEYS)
    session = psycopg2.connect(postgres)
    session.autocommit = True
    with session.cursor() as cursor:
        for table in tables:
            for load_id in (first, resumed):
                cursor.execute(
                    f"insert into kps_raw.{table} select * from kps_raw.{table}"
                    " where _dlt_load_id = %s limit 2",
                    [load_id],
                )
    planted = {t: sorted(query(None, f"select * from kps_raw.{t}"), key=repr) for t in tables}

    with session.cursor() as cursor:
        dlt_adapter.drop_doubled_rows(cursor, load.DATASET, [resumed])
    session.close()

    after = {t: sorted(query(None, f"select * from kps_raw.{t}"), key=repr) for t in tables}
    for table in tables:
        resumed_rows = [r for r in planted[table] if resumed in r]
        first_rows = [r for r in planted[table] if first in r]
        assert [r for r in after[table] if resumed in r] == sorted(set(resumed_rows), key=repr)
        assert [r for r in after[table] if first in r] == first_rows  # copies left alone
        assert len(set(resumed_rows)) < len(resumed_rows) and len(set(first_rows)) < len(first_rows)
