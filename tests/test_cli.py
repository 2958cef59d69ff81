"""The commands' outside: exit statuses, one-line errors, JSON lines under a scheduler."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import CLI, query, run_cli


def test_every_command_has_help():
    for command in ("run", "demo", "transform", "report", "simulate", "status"):
        result = subprocess.run([CLI, command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: kps-warehouse {command}")


def test_a_wrong_token_fails_every_project_in_one_request_each(
    simulator, configure, warehouse, capsys
):
    simulator.add_project(tasks=5)
    simulator.add_project(tasks=5)
    configure(token="not-the-token")

    assert run_cli("run", "--no-transform", "--log-format", "text") == 1

    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("kps-warehouse: every project (2) refused the credentials: 401 ")
    assert len(simulator.requests) == 2
    assert "not-the-token" not in line
    assert query(
        warehouse, "select count(*), count(*) filter (status = 'failed') from kps_raw.runs"
    ) == [(2, 2)]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SOURCES__KPS__PAGE_SIZE": "5000"}, "page_size 5000 is not between 1 and 1000"),
        ({"SOURCES__KPS__PROJECTS": "{}"}, "no projects: set sources.kps.project_ids"),
        (
            {"SOURCES__KPS__PROJECTS": '{"cn-north-4": ["../../etc"]}'},
            "project id '../../etc' is not 1-64 letters",
        ),
        (
            {"SOURCES__KPS__ENDPOINT": "http://kms.example.com/{region}"},
            "credentials go only over https",
        ),
        (
            {"SOURCES__KPS__CREDENTIALS__IAM_ENDPOINT": "http://iam.example.com"},
            "iam_endpoint 'http://iam.example.com': credentials go only over https",
        ),
    ],
)
def test_bad_configuration_exits_2_with_one_line(
    simulator, configure, warehouse, monkeypatch, capsys, env, message
):
    simulator.add_project(tasks=1)
    configure()
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    assert run_cli("run", "--log-format", "text") == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("kps-warehouse: configuration: ")
    assert message in err[0]
    assert simulator.requests == []


def test_missing_credentials_exit_2_naming_the_key(simulator, configure, monkeypatch, capsys):
    simulator.add_project(tasks=1)
    configure()
    monkeypatch.delenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN")

    assert run_cli("run", "--log-format", "text") == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "sources.kps.credentials.auth_token" in err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ("run", "--log-format", "xml"),
        ("simulate", "--throttle-rate", "2"),
        ("status", "--max-age", "soon"),
        ("report", "--days", "0"),
    ],
)
def test_bad_usage_exits_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*argv)
    assert exit_info.value.code == 2


def test_without_a_terminal_every_line_is_json(simulator, configure, warehouse):
    simulator.add_project(tasks=12)
    broken_region = {"cn-north-4": list(simulator.projects()), "cn-east-3": ["0" * 32]}
    configure()
    env = {**os.environ, "SOURCES__KPS__PROJECTS": json.dumps(broken_region)}

    result = subprocess.run(
        [CLI, "run", "--no-transform"], capture_output=True, text=True, env=env, timeout=120
    )

    assert result.returncode == 3, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    err = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in out] == ["project", "project", "summary"]
    assert out[-1]["projects_ok"] == 1 and out[-1]["projects_failed"] == 1
    assert out[-1]["tasks_seen"] == 12
    assert [e["event"] for e in err] == ["error"]
    assert "APIGW.0310" in err[0]["message"]
