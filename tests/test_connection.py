"""`kps_warehouse.connect`: from Python, always the newest published run, even in a process that
still holds a connection to an earlier one (a notebook kernel)."""

from __future__ import annotations

import duckdb
import pytest

from kps_warehouse import connect

from .conftest import run_cli

COUNT = "select count(*) from marts.fct_failed_tasks"


def test_a_new_connection_sees_the_newest_run_while_an_older_one_stays_open(
    simulator, configure, warehouse
):
    project = simulator.add_project(tasks=30)
    configure()
    assert run_cli("run", "--log-format", "text") == 0
    older = connect(warehouse)
    # as a notebook did before: a plain connection, left open in the kernel
    plain_older = duckdb.connect(str(warehouse), read_only=True)
    assert older.execute(COUNT).fetchone() == plain_older.execute(COUNT).fetchone() == (30,)

    simulator.add_tasks(project, 5)
    assert run_cli("run", "--log-format", "text") == 0

    with connect(warehouse) as newer:
        assert newer.execute(COUNT).fetchone() == (35,)
    # the configured warehouse, as every command finds it
    with connect() as configured:
        assert configured.execute(COUNT).fetchone() == (35,)
    # open connections keep reading the run they opened, undisturbed
    assert older.execute(COUNT).fetchone() == plain_older.execute(COUNT).fetchone() == (30,)
    # what connect() works around: DuckDB hands a new plain connection the instance it still
    # holds for the path, and with it the file as it was
    with duckdb.connect(str(warehouse), read_only=True) as plain:
        assert plain.execute(COUNT).fetchone() == (30,)
    older.close()
    plain_older.close()


def test_the_connection_is_read_only_in_utc_and_names_the_file(simulator, configure, warehouse):
    simulator.add_project(tasks=3)
    configure()
    assert run_cli("run", "--log-format", "text") == 0

    with connect(warehouse) as con:
        assert con.execute("select current_database(), current_setting('TimeZone')").fetchone() == (
            "kps",
            "UTC",
        )
        # the staging views resolve inside the attached file too
        assert con.execute("select count(*) from staging.stg_kps__failed_tasks").fetchone() == (3,)
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("delete from marts.dim_projects")


def test_a_missing_warehouse_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no warehouse at .*: run `kps-warehouse run`"):
        connect(tmp_path / "nowhere.duckdb")
