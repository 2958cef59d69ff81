"""The first hour of a new user: a failed first try, the demo and what comes after it, a wrong
directory, a wrong token, a project name for an id, the DuckDB CLI, the disk a warehouse takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from kps_warehouse.ops.warehouse import Warehouse

from .conftest import query, run_cli

DUCKDB_CLI = str(Path(sys.executable).parent / "duckdb")


@pytest.fixture
def no_kps_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the source configured in the environment, whatever the machine sets."""
    for name in list(os.environ):
        if name.startswith("SOURCES__KPS__"):
            monkeypatch.delenv(name)


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_a_run_without_credentials_writes_nothing_and_status_says_none_yet(
    simulator, configure, warehouse, monkeypatch, capsys
):
    project_id = simulator.add_project(tasks=3)
    configure()
    monkeypatch.delenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN")

    assert run_cli("run", "--log-format", "text") == 2
    assert run_cli("transform") == 1
    capsys.readouterr()

    assert not warehouse.parent.exists()  # no writer copy, lock file or dlt folder
    assert run_cli("status") == 0
    assert capsys.readouterr().out == (
        f"warehouse {warehouse}: last successful load never: none yet (`kps-warehouse run`"
        " builds it, `make demo` a simulated one)\n"
        f"-                      {project_id}  configured, not run yet\n"
    )


def test_status_says_what_an_empty_or_half_built_warehouse_holds(
    simulator, configure, warehouse, capsys
):
    warehouse.parent.mkdir()
    duckdb.connect(str(warehouse)).close()  # a DuckDB file without a table

    assert run_cli("status") == 0
    assert capsys.readouterr().out.endswith(
        "last successful load never: holds no run yet (`kps-warehouse run` loads it)\n"
    )
    # ... and `transform` does not publish it as a warehouse
    assert run_cli("transform") == 1
    assert "no data loaded yet" in capsys.readouterr().err

    warehouse.unlink()
    project_id = simulator.add_project(tasks=3)
    configure()
    assert run_cli("run", "--no-transform") == 0
    capsys.readouterr()

    assert run_cli("status") == 0
    first, line = capsys.readouterr().out.strip().splitlines()
    assert first.endswith("; its models are not built (`kps-warehouse transform` builds them)")
    assert line.startswith(f"ok     cn-north-4      {project_id}  last run ")

    # once the models are built (fct_failed_tasks is a view), status says nothing is missing
    assert run_cli("transform") == 0
    capsys.readouterr()
    assert run_cli("status") == 0
    first, _ = capsys.readouterr().out.strip().splitlines()
    assert first.endswith(" ago")


def test_from_a_folder_without_configuration_run_says_where_it_looked_and_writes_nothing(
    warehouse, no_kps_settings, capsys
):
    folder = Path.cwd()

    assert run_cli("run", "--log-format", "text") == 2

    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        f"kps-warehouse: configuration: none found: no .dlt/config.toml or secrets.toml in"
        f" {folder / '.dlt'} (the working directory) or "
    )
    assert line.endswith(
        "and no SOURCES__KPS__* variable in the environment; run from the folder that holds"
        " .dlt/, or set the variables"
    )
    assert files_under(folder) == []


def test_after_the_demo_status_report_and_the_duckdb_cli_read_its_warehouse(
    warehouse, no_kps_settings, monkeypatch, capsys
):
    monkeypatch.delenv("DESTINATION__DUCKDB__CREDENTIALS")  # the default, as a newcomer has it
    assert run_cli("demo") == 0
    demo_out = capsys.readouterr().out
    assert "  warehouse/kps.duckdb" not in demo_out  # printed in full, and in the next steps:
    assert 'duckdb -readonly warehouse/kps.duckdb "select keypair_name' in demo_out

    assert run_cli("status") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"warehouse {warehouse}: last successful load 0 min ago")
    assert [line.split()[0] for line in lines[1:]] == ["ok"] * 4

    assert run_cli("report") == 0
    assert capsys.readouterr().out == f"report: {warehouse.parent / 'report.html'}\n"

    cli = subprocess.run(
        [DUCKDB_CLI, "-readonly", "warehouse/kps.duckdb", "-csv", "-noheader", "-c",
         "select count(*), count(distinct project_id) from marts.fct_failed_tasks"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    [(tasks, projects)] = query(
        warehouse, "select count(*), count(distinct project_id) from marts.fct_failed_tasks"
    )
    assert cli.stdout == f"{tasks},{projects}\n"
    assert projects == 4


def test_the_first_real_run_replaces_the_demo_and_the_demo_never_replaces_a_real_warehouse(
    simulator, configure, warehouse, capsys
):
    assert run_cli("demo") == 0
    project_id = simulator.add_project(tasks=4)
    configure()
    capsys.readouterr()

    assert run_cli("run", "--log-format", "text") == 0

    assert capsys.readouterr().out.startswith(
        f"{warehouse} holds the demo's simulated data: this run replaces it\n"
    )
    assert query(warehouse, "select distinct project_id from marts.dim_projects") == [(project_id,)]
    before = query(warehouse, "select * from kps_raw.runs")

    assert run_cli("demo") == 2

    assert capsys.readouterr().err == (
        f"kps-warehouse: configuration: {warehouse} holds real runs, and the demo replaces only"
        " its own warehouse: set DESTINATION__DUCKDB__CREDENTIALS to another file to run the demo"
        " there\n"
    )
    assert query(warehouse, "select * from kps_raw.runs") == before


def test_a_report_of_a_project_the_warehouse_never_loaded_exits_2_naming_it(
    simulator, configure, warehouse, capsys
):
    simulator.add_project(tasks=3)
    configure()
    assert run_cli("run") == 0
    capsys.readouterr()

    assert run_cli("report", "--project", "0123456789abcdef0123456789abcdef") == 2

    assert capsys.readouterr().err == (
        "kps-warehouse: configuration: --project 0123456789abcdef0123456789abcdef:"
        f" no runs of it in {warehouse}\n"
    )
    assert not (warehouse.parent / "report.html").exists()


def test_the_duckdb_cli_in_the_venv_reads_the_warehouse_and_cannot_write_it(
    simulator, configure, warehouse
):
    simulator.add_project(tasks=7)
    configure()
    assert run_cli("run") == 0

    def cli(sql: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [DUCKDB_CLI, "-readonly", str(warehouse), "-csv", "-noheader", "-c", sql],
            capture_output=True,
            text=True,
            timeout=60,
        )

    read = cli("select count(*), count(*) filter (where is_open) from marts.fct_failed_tasks")
    assert (read.returncode, read.stdout) == (0, "7,7\n")
    assert cli("select version()").stdout == f"v{duckdb.__version__}\n"  # the pinned one
    write = cli("create table marts.scribble as select 1")
    assert write.returncode != 0
    assert "read-only" in write.stderr


def test_a_wrong_token_on_every_project_is_one_line_naming_the_setting(
    simulator, configure, warehouse, capsys
):
    simulator.add_project(tasks=5)
    simulator.add_project(tasks=5)
    configure(token="not-the-token")

    assert run_cli("run", "--log-format", "text") == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "kps-warehouse: every project (2) refused the credentials: 401 APIGW.0301 Incorrect IAM"
        " authentication information: decrypt token fail.; check"
        " sources.kps.credentials.auth_token (SOURCES__KPS__CREDENTIALS__AUTH_TOKEN)\n"
    )


def test_a_project_name_for_an_id_is_warned_about_before_the_run(
    simulator, configure, warehouse, monkeypatch, capsys
):
    project_id = simulator.add_project(tasks=2)
    configure()
    monkeypatch.setenv(
        "SOURCES__KPS__PROJECTS", json.dumps({"cn-north-4": [project_id, "my-prod-project"]})
    )

    assert run_cli("run", "--log-format", "text") == 3

    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "kps-warehouse: warning: project id 'my-prod-project' is not 32 hex characters like"
        " Huawei Cloud's project ids (is it a project name? The console lists ids under"
        " My Credentials > API Credentials)"
    )
    assert err[1].startswith("kps-warehouse: project my-prod-project: ")
    assert len(err) == 2  # the real id is not warned about


def test_between_runs_only_the_warehouse_is_on_disk(simulator, configure, warehouse, writer):
    project_id = simulator.add_project(tasks=5)
    configure()
    assert run_cli("run") == 0
    simulator.add_tasks(project_id, 2)
    with duckdb.connect(str(warehouse), read_only=True) as reader:
        assert run_cli("run") == 0
        # a reader that had it open keeps its version
        assert reader.execute("select count(*) from kps_raw.failed_tasks").fetchone() == (5,)

    assert not writer.exists()
    # ... and no connection of this process is left open on it: DuckDB would hand a later run
    # that database, the file since renamed into the warehouse, for the new writer copy.
    with pytest.raises(duckdb.IOException, match="database does not exist"):
        duckdb.connect(str(writer), read_only=True)
    files = sorted(path.name for path in warehouse.parent.iterdir() if path.is_file())
    assert files == sorted([warehouse.name, Warehouse(warehouse).lock_file.name])
    assert query(warehouse, "select count(*) from kps_raw.failed_tasks") == [(7,)]
