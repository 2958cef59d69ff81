"""`kps-warehouse simulate`: a port in use is one line and exit 2; each kind of credentials it
prints points a real run at it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from .conftest import CLI, query, run_cli

EXPORT = re.compile(r"  export (SOURCES__KPS__\w+)='(.*)'")


def test_a_port_in_use_is_one_line_naming_it_and_exit_2(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        assert run_cli("simulate", "--port", str(port)) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"kps-warehouse: simulate: cannot serve on 127.0.0.1:{port}: Address already in use; "
        "choose another --port\n"
    )


@pytest.fixture
def settings() -> Iterator[dict[str, dict[str, str]]]:
    """`simulate` running in its own process, and the settings it printed, by heading."""
    process = subprocess.Popen(
        [CLI, "simulate", "--port", "0", "--projects", "2", "--tasks", "15", "--user-name", "ana"],
        stdout=subprocess.PIPE,
        text=True,
    )
    printed: dict[str, dict[str, str]] = {"": {}}
    heading = ""
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("KPS simulator on http://127.0.0.1:")
        for line in process.stdout:
            if line.endswith(":\n") and not line.startswith(" "):
                heading = line.removesuffix(":\n")
                printed[heading] = {}
            elif match := EXPORT.fullmatch(line.rstrip("\n")):
                printed[heading][match[1]] = match[2]
                if match[1].endswith("SECRET_KEY"):
                    break
        yield printed
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


@pytest.mark.parametrize(
    "kind",
    ["or an IAM user's password (unset the token)", "or AK/SK (unset the token and the password)"],
)
def test_a_run_loads_with_the_password_or_the_aksk_that_simulate_prints(
    settings, kind, warehouse, monkeypatch
):
    assert settings[kind]  # printed under that heading
    for name, value in {**settings[""], **settings[kind]}.items():
        monkeypatch.setenv(name, value)

    assert run_cli("run", "--log-format", "text") == 0

    assert query(warehouse, "select count(*) from marts.fct_failed_tasks") == [(30,)]
