"""The scheduling recipes in deploy/ parse, and the commands they run work as written."""

from __future__ import annotations

import ast
import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from .conftest import query

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
INSTALL, WORKDIR = "/opt/kps-warehouse", "/var/lib/kps-warehouse"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?)(/\d+)?)*$")


def localised(command: str, workdir: Path) -> str:
    """The recipe's command with its install and working directories pointed at this test."""
    return command.replace(INSTALL, str(REPO)).replace(WORKDIR, str(workdir))


def test_every_crontab_line_is_valid_and_its_commands_work(simulator, configure, tmp_path):
    simulator.add_project(tasks=30)
    configure()
    (tmp_path / "warehouse").mkdir(exist_ok=True)
    entries = [
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(entries) == 2
    for entry in entries:
        fields = entry.split(maxsplit=5)
        assert all(CRON_FIELD.match(field) for field in fields[:5]), entry
        result = subprocess.run(["sh", "-c", localised(fields[5], tmp_path)], capture_output=True)
        assert result.returncode == 0, result.stderr

    log = (tmp_path / "warehouse" / "run.log").read_text().splitlines()
    assert [json.loads(line)["event"] for line in log][-1] == "summary"
    assert query(
        tmp_path / "warehouse" / "kps.duckdb", "select count(*) from kps_raw.failed_tasks"
    ) == [(30,)]


def test_the_systemd_units_parse_and_the_service_command_works(simulator, configure, tmp_path):
    simulator.add_project(tasks=12)
    configure()
    service, timer = (configparser.ConfigParser(strict=True, interpolation=None) for _ in range(2))
    service.optionxform = timer.optionxform = str  # systemd keys are case-sensitive
    service.read(DEPLOY / "systemd" / "kps-warehouse.service")
    timer.read(DEPLOY / "systemd" / "kps-warehouse.timer")

    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["WorkingDirectory"] == WORKDIR
    assert service["Service"]["ReadWritePaths"] == WORKDIR
    assert timer["Timer"]["OnCalendar"] == "*:0/15"
    if shutil.which("systemd-analyze"):  # systemd's own parser, where the machine has it
        calendar = ["systemd-analyze", "calendar", timer["Timer"]["OnCalendar"]]
        assert "*-*-* *:00/15:00" in subprocess.run(calendar, capture_output=True, text=True).stdout
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    command = shlex.split(localised(service["Service"]["ExecStart"], tmp_path))
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["event"] for event in events] == ["project", "transform", "summary"]
    assert (events[-1]["tasks_seen"], events[-1]["exit_code"]) == (12, 0)


def test_the_airflow_dag_runs_the_same_commands_once_at_a_time():
    source = (DEPLOY / "airflow" / "kps_warehouse_dag.py").read_text()
    tree = ast.parse(source)
    calls = {
        node.func.id: {kw.arg: kw.value for kw in node.keywords}
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }

    dag = calls["DAG"]
    assert ast.literal_eval(dag["dag_id"]) == "kps_warehouse"
    assert ast.literal_eval(dag["max_active_runs"]) == 1
    assert ast.literal_eval(dag["catchup"]) is False
    commands = [
        ast.unparse(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "bash_command"
    ]
    assert any("kps-warehouse run --log-format json" in c for c in commands)
    assert any("kps-warehouse status --max-age 2h" in c for c in commands)
    assert "run >> freshness" in source
