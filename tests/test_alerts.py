"""Alerts: each event found once, sent once per receiver in its format, never harming the load.

The receivers are real HTTP servers on loopback, one per format, that record every request,
answer as the platform does (error codes in a 200 for a bad signature) and fail on demand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kps_simulator import Simulator
from kps_warehouse.alerts.formats import dingtalk_sign, feishu_sign

from .conftest import CLI, FIXED_NOW_MS, query, run_cli, text_columns_holding

DAY_MS = 86_400_000
MARCH_1 = FIXED_NOW_MS  # 2026-03-01T00:00:00Z: the simulator's history ends here
FORMATS = ("json", "slack", "feishu", "dingtalk", "wecom")


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone before its answer (a killed run, a timeout) is no test failure."""


class Receiver:
    """A webhook on loopback in one format. `fail_with` answers every request with that status;
    `delay` holds each answer that long; `hold`, when set, holds answers until it is set."""

    def __init__(self, fmt: str, secret: str | None = None) -> None:
        self.format = fmt
        self.secret = secret
        self.token = uuid.uuid4().hex  # the URL's secret part, as real webhook URLs have one
        self.received: list[Received] = []
        self.answered: list[int] = []  # the status of each answer, in order
        self.fail_with: int | None = None
        self.delay = 0.0
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path, _, query = self.path.partition("?")
                receiver.received.append(
                    Received(path, query, dict(self.headers), json.loads(raw), raw)
                )
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait()
                time.sleep(receiver.delay)
                status, answer = receiver.answer(query, json.loads(raw))
                receiver.answered.append(status)
                data = answer.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        query = f"?access_token={self.token}" if self.format == "dingtalk" else ""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/{self.token}{query}"

    def config(self, **extra: Any) -> dict[str, Any]:
        return {
            "name": f"{self.format}-oncall",
            "format": self.format,
            "url": self.url,
            **({"secret": self.secret} if self.secret else {}),
            **extra,
        }

    def answer(self, query: str, body: dict[str, Any]) -> tuple[int, str]:
        if self.fail_with:
            return self.fail_with, '{"error": "failing on demand"}'
        if self.format == "feishu":
            if self.secret and not feishu_signed(body, self.secret):
                return 200, '{"code": 19021, "msg": "sign match fail", "data": {}}'
            return 200, '{"code": 0, "msg": "success", "data": {}}'
        if self.format == "dingtalk":
            if self.secret and not dingtalk_signed(query, self.secret):
                return 200, '{"errcode": 310000, "errmsg": "sign not match"}'
            return 200, '{"errcode": 0, "errmsg": "ok"}'
        if self.format == "wecom":
            return 200, '{"errcode": 0, "errmsg": "ok"}'
        return 200, "ok"

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def feishu_signed(body: dict[str, Any], secret: str) -> bool:
    """Feishu's check, as its custom-bot guide's Python sample computes the signature
    (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot, "signature
    verification"): HMAC-SHA256 keyed with timestamp + "\\n" + secret over an empty message,
    base64; the timestamp in seconds, within an hour of now."""
    timestamp = body.get("timestamp", "0")
    key_enc = f"{timestamp}\n{secret}".encode()
    hmac_code = hmac.new(key_enc, b"", digestmod=hashlib.sha256).digest()
    sign = base64.b64encode(hmac_code).decode("utf-8")
    return body.get("sign") == sign and abs(time.time() - int(timestamp)) < 3600


def dingtalk_signed(query: str, secret: str) -> bool:
    """DingTalk's check, as its robot security settings page's Python sample computes it
    (https://open.dingtalk.com/document/robots/customize-robot-security-settings, "加签"):
    HMAC-SHA256 keyed with the secret over timestamp + "\\n" + secret, base64, then
    urllib.parse.quote_plus into the URL's `sign`; the timestamp in ms, within an hour."""
    params = dict(part.split("=", 1) for part in query.split("&"))
    timestamp = params.get("timestamp", "0")
    string_to_sign = f"{timestamp}\n{secret}"
    hmac_code = hmac.new(
        secret.encode("utf-8"), string_to_sign.encode("utf-8"), digestmod=hashlib.sha256
    ).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(hmac_code))
    return params.get("sign") == sign and abs(time.time() * 1000 - int(timestamp)) < 3_600_000


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    secrets = {"feishu": "feishu-" + uuid.uuid4().hex, "dingtalk": "SEC" + uuid.uuid4().hex}
    started = {fmt: Receiver(fmt, secrets.get(fmt)) for fmt in FORMATS}
    yield started
    for receiver in started.values():
        receiver.stop()


@pytest.fixture
def alerting(configure, monkeypatch: pytest.MonkeyPatch):
    """Points the pipeline at the simulator and the alerts at these receivers."""

    def _alerting(receivers: list[dict[str, Any]], **settings: Any) -> None:
        configure()
        monkeypatch.setenv("KPS_WAREHOUSE__ALERTS__RECEIVERS", json.dumps(receivers))
        for name, value in settings.items():
            text = value if isinstance(value, str) else json.dumps(value)
            monkeypatch.setenv(f"KPS_WAREHOUSE__ALERTS__{name.upper()}", text)

    return _alerting


def add_spike(sim: Simulator, project_id: str, keypair: str, day_ms: int, n: int = 12) -> None:
    """n failures of one key pair on one day: on n servers and under the codes the project has
    failed with before (at most 3 a code), so only the key pair spikes and no code is new."""
    codes = sorted({t["task_error_code"] for t in sim.tasks(project_id) if t["task_error_code"]})
    assert len(codes) >= 6
    sim.add_tasks(
        project_id,
        [
            {
                "task_id": str(uuid.uuid4()),
                "operate_type": "FAILED_BIND",
                "task_time": str(day_ms + 3_600_000 + i * 60_000),
                "task_error_code": codes[i % len(codes)],
                "task_error_msg": "Update public key error",
                "server_name": f"{keypair}-ecs-{i}",
                "server_id": str(uuid.uuid4()),
                "keypair_name": keypair,
            }
            for i in range(n)
        ],
    )


def last_run_id(warehouse: Path) -> str:
    return query(warehouse, "select max(run_id) from kps_raw.runs")[0][0]


def sent_keys(receiver: Receiver) -> list[str]:
    """The event keys a json receiver got, in order."""
    return [r.body["key"] for r in receiver.received]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """`run --log-format json`: the exit status and the summary line."""
    code = run_cli("run", "--log-format", "json", *args)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [summary] = [line for line in lines if line["event"] == "summary"]
    return code, summary


def test_signatures_match_the_platforms_documented_algorithms():
    # Vectors computed independently with OpenSSL, e.g. for Feishu:
    #   printf '' | openssl dgst -sha256 -hmac "$(printf '1599360473\ndemo-secret')" -binary \
    #   | base64
    # (1599360473 is the timestamp of Feishu's own example; "this is secret" the secret of
    # DingTalk's sample code, see feishu_signed and dingtalk_signed for the pages).
    assert (
        feishu_sign("1599360473", "demo-secret") == "3/MaVZ8JLIy4TUG+7KSFJqvUkTKd+HWY8g+56DZWq8s="
    )
    assert (
        dingtalk_sign("1577262236757", "this is secret")
        == "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="
    )


def test_a_new_spike_goes_once_to_every_receiver_in_its_format_and_a_repeat_run_sends_nothing(
    simulator, alerting, receivers, warehouse, capsys
):
    project_id = simulator.add_project(tasks=300)  # 21 spike days in its history, none lately
    alerting([r.config() for r in receivers.values()])
    assert run_json(capsys)[1]["alerts"] == {"found": 0, "sent": 0, "failed": 0, "pending": 0}
    assert all(r.received == [] for r in receivers.values())

    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    code, summary = run_json(capsys)

    assert code == 0
    assert summary["alerts"] == {"found": 1, "sent": 5, "failed": 0, "pending": 0}
    key = f"spike:{project_id}:keypair:kp-spike:2026-03-01"
    text = (
        f"Failure spike: key pair kp-spike in project {project_id}: 12 failures on 2026-03-01,"
        " against 0.0 a day over the days before (z 12.0)"
    )
    assert [r.body for r in receivers["json"].received] == [
        {
            "event": "spike",
            "key": key,
            "severity": "critical",
            "project_id": project_id,
            "dimension": "keypair",
            "name": "kp-spike",
            "day": "2026-03-01",
            "failures": 12,
            "baseline": 0.0,
            "z_score": 12.0,
            "run_id": summary["run_id"],
            "summary": text,
            "source": "kps-warehouse",
        }
    ]
    title = "kps-warehouse: 1 new alert"
    assert [r.body for r in receivers["slack"].received] == [
        {
            "text": f"{title}\n[critical] {text}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title}},
                {"type": "section", "text": {"type": "mrkdwn", "text": f"• *critical* {text}"}},
            ],
        }
    ]
    [feishu] = receivers["feishu"].received
    assert feishu_signed(feishu.body, receivers["feishu"].secret)
    assert {k: v for k, v in feishu.body.items() if k not in ("timestamp", "sign")} == {
        "msg_type": "text",
        "content": {"text": f"{title}\n[critical] {text}"},
    }
    markdown = f"**{title}**\n- **critical** {text}"
    [dingtalk] = receivers["dingtalk"].received
    assert dingtalk_signed(dingtalk.query, receivers["dingtalk"].secret)
    assert dingtalk.query.startswith(f"access_token={receivers['dingtalk'].token}&timestamp=")
    assert dingtalk.body == {"msgtype": "markdown", "markdown": {"title": title, "text": markdown}}
    assert [r.body for r in receivers["wecom"].received] == [
        {"msgtype": "markdown", "markdown": {"content": markdown}}
    ]

    assert run_json(capsys)[1]["alerts"] == {"found": 0, "sent": 0, "failed": 0, "pending": 0}
    assert [len(r.received) for r in receivers.values()] == [1, 1, 1, 1, 1]

    add_spike(simulator, project_id, "kp-other", MARCH_1)
    assert run_json(capsys)[1]["alerts"] == {"found": 1, "sent": 5, "failed": 0, "pending": 0}
    assert [len(r.received) for r in receivers.values()] == [2, 2, 2, 2, 2]
    assert sent_keys(receivers["json"])[1] == f"spike:{project_id}:keypair:kp-other:2026-03-01"
    assert query(
        warehouse,
        "select receiver, status, attempts, sent_run_id is not null from alerts.deliveries"
        " where key = ? order by receiver",
        [key],
    ) == [(f"{fmt}-oncall", "sent", 1, True) for fmt in sorted(FORMATS)]


def test_a_spike_that_goes_on_the_next_day_is_not_told_again(
    simulator, alerting, receivers, warehouse, capsys
):
    project_id = simulator.add_project(tasks=300)
    alerting([receivers["json"].config()])
    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    run_json(capsys)
    add_spike(simulator, project_id, "kp-spike", MARCH_1 + DAY_MS)

    assert run_json(capsys)[1]["alerts"] == {"found": 0, "sent": 0, "failed": 0, "pending": 0}
    # both days are spikes in the mart; the second continues the first, whose key stays
    assert query(
        warehouse,
        "select day, failures from marts.failure_spikes where key = 'kp-spike' order by day",
    ) == [(date(2026, 3, 1), 12), (date(2026, 3, 2), 12)]
    assert sent_keys(receivers["json"]) == [f"spike:{project_id}:keypair:kp-spike:2026-03-01"]


def comparable(warehouse: Path) -> dict[str, list[tuple]]:
    """What a run loaded and built, without what differs between runs (ids, times)."""
    return {
        "spikes": query(warehouse, "select * from marts.failure_spikes order by all"),
        "trend": query(warehouse, "select * from marts.failure_trend_keypair order by all"),
        "tasks": query(
            warehouse,
            "select project_id, task_id, row_hash from kps_raw.failed_tasks order by all",
        ),
        "runs": query(warehouse, "select status, tasks_seen, error from kps_raw.runs order by all"),
    }


def test_a_receiver_failing_a_whole_run_changes_nothing_and_the_next_run_sends_once(
    simulator, alerting, receivers, warehouse, tmp_path, monkeypatch, capsys
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    alerting([receivers["json"].config(), receivers["wecom"].config()])
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "plain" / "kps.duckdb"))
    monkeypatch.setenv("KPS_WAREHOUSE__ALERTS__RECEIVERS", "[]")
    without_alerts = run_json(capsys)
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(warehouse))
    monkeypatch.setenv(
        "KPS_WAREHOUSE__ALERTS__RECEIVERS",
        json.dumps([receivers["json"].config(), receivers["wecom"].config()]),
    )
    receivers["json"].fail_with = 500
    receivers["wecom"].fail_with = 503

    code, summary = run_json(capsys)

    assert (code, summary["exit_code"]) == (without_alerts[0], 0)
    assert "alerts" not in without_alerts[1]
    assert summary["alerts"] == {"found": 1, "sent": 0, "failed": 2, "pending": 2}
    assert comparable(warehouse) == comparable(tmp_path / "plain" / "kps.duckdb")
    # retried with backoff within the run: three attempts each
    assert [len(receivers[f].received) for f in ("json", "wecom")] == [3, 3]
    assert query(
        warehouse, "select receiver, status, attempts, last_error from alerts.deliveries order by 1"
    ) == [("json-oncall", "pending", 3, "HTTP 500"), ("wecom-oncall", "pending", 3, "HTTP 503")]

    receivers["json"].fail_with = receivers["wecom"].fail_with = None
    assert run_json(capsys)[1]["alerts"] == {"found": 0, "sent": 2, "failed": 0, "pending": 0}
    assert run_json(capsys)[1]["alerts"] == {"found": 0, "sent": 0, "failed": 0, "pending": 0}
    key = f"spike:{project_id}:keypair:kp-spike:2026-03-01"
    assert sent_keys(receivers["json"]) == [key] * 4  # three refused, one taken
    assert receivers["json"].answered == [500, 500, 500, 200]


def test_a_first_run_over_history_tells_only_what_is_happening_now(
    simulator, alerting, receivers, warehouse, capsys
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-yesterday", MARCH_1 - DAY_MS)
    alerting([receivers["json"].config()])

    assert run_json(capsys)[1]["alerts"] == {"found": 1, "sent": 1, "failed": 0, "pending": 0}
    assert sent_keys(receivers["json"]) == [f"spike:{project_id}:keypair:kp-yesterday:2026-02-28"]
    # the mart holds 22 spike days, 21 of them weeks before the latest day of the data
    assert query(warehouse, "select count(*), min(day) from marts.failure_spikes") == [
        (22, date(2025, 11, 30))
    ]


def test_a_new_error_code_is_told_once_per_project(
    simulator, alerting, receivers, warehouse, capsys
):
    project_id = simulator.add_project(tasks=300)
    alerting([receivers["json"].config()])
    run_json(capsys)
    task = {
        "operate_type": "FAILED_RESET",
        "task_error_code": "KPS.0999",
        "task_error_msg": "Something new",
        "server_name": "ecs-1",
        "server_id": str(uuid.uuid4()),
        "keypair_name": "kp-a",
    }
    simulator.add_tasks(
        project_id, [{**task, "task_id": str(uuid.uuid4()), "task_time": str(MARCH_1 + 60_000)}]
    )
    assert run_json(capsys)[1]["alerts"]["found"] == 1
    simulator.add_tasks(
        project_id, [{**task, "task_id": str(uuid.uuid4()), "task_time": str(MARCH_1 + DAY_MS)}]
    )
    assert run_json(capsys)[1]["alerts"]["found"] == 0

    [message] = [r.body for r in receivers["json"].received]
    assert (message["key"], message["severity"], message["day"], message["failures"]) == (
        f"new_error_code:{project_id}:KPS.0999",
        "warning",
        "2026-03-01",
        1,
    )
    assert message["summary"] == (
        f"New error code KPS.0999 in project {project_id}: 1 failures on 2026-03-01,"
        " never seen there before"
    )


def test_a_project_failing_3_runs_in_a_row_is_told_once_and_so_is_its_recovery(
    simulator, alerting, receivers, warehouse, capsys, monkeypatch
):
    simulator.add_project(tasks=50)
    alerting([receivers["json"].config()])
    missing = "0123456789abcdef0123456789abcdef"  # configured, but unknown to the API
    projects = {"cn-north-4": [*simulator.projects(), missing]}
    monkeypatch.setenv("SOURCES__KPS__PROJECTS", json.dumps(projects))

    codes = [run_json(capsys)[0] for _ in range(4)]
    simulator.add_project(missing, tasks=5)
    codes += [run_json(capsys)[0] for _ in range(2)]

    assert codes == [3, 3, 3, 3, 0, 0]
    failed_runs = query(
        warehouse,
        "select run_id from kps_raw.runs where project_id = ? and status = 'failed'"
        " order by started_at",
        [missing],
    )
    first = failed_runs[0][0]
    assert [
        (r.body["event"], r.body["key"], r.body["failures"]) for r in receivers["json"].received
    ] == [
        ("project_failing", f"project_failing:{missing}:{first}", 3),
        ("project_recovered", f"project_recovered:{missing}:{first}", 4),
    ]
    failing = receivers["json"].received[0].body
    assert failing["severity"] == "critical"
    assert failing["summary"].startswith(
        f"Project {missing} (cn-north-4) failed its last 3 runs, since "
    )
    assert failing["summary"].endswith(": 403 APIGW.0310 The project is unavailable.")


def test_receivers_get_only_the_kinds_and_severities_they_want_and_nothing_muted(
    simulator, alerting, receivers, warehouse, capsys
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-spike", MARCH_1)  # critical: z 12
    add_spike(simulator, project_id, "kp-mild", MARCH_1, n=5)  # warning: z 5
    other_project = simulator.add_project(tasks=300)
    add_spike(simulator, other_project, "kp-maintained", MARCH_1)
    alerting(
        [
            receivers["json"].config(),
            receivers["slack"].config(min_severity="critical"),
            receivers["wecom"].config(events=["project_failing"]),
        ],
        mutes=[
            {"key": "spike:*:keypair:kp-maintained:*", "until": "2999-01-01T00:00:00Z"},
            {"key": "spike:*:keypair:kp-spike:*", "until": "2026-01-01T00:00:00Z"},  # over
        ],
    )

    assert run_json(capsys)[1]["alerts"] == {"found": 3, "sent": 3, "failed": 0, "pending": 0}

    spike = f"spike:{project_id}:keypair:{{}}:2026-03-01"
    muted = f"spike:{other_project}:keypair:kp-maintained:2026-03-01"
    assert sorted(sent_keys(receivers["json"])) == [
        spike.format("kp-mild"),
        spike.format("kp-spike"),
    ]
    assert [r.body["text"].splitlines()[1] for r in receivers["slack"].received] == [
        f"[critical] Failure spike: key pair kp-spike in project {project_id}: 12 failures on"
        " 2026-03-01, against 0.0 a day over the days before (z 12.0)"
    ]
    assert receivers["wecom"].received == []
    assert sorted(
        query(warehouse, "select key, receiver, status from alerts.deliveries")
    ) == sorted(
        [
            (muted, "json-oncall", "muted"),
            (muted, "slack-oncall", "muted"),
            (spike.format("kp-mild"), "json-oncall", "sent"),
            (spike.format("kp-spike"), "json-oncall", "sent"),
            (spike.format("kp-spike"), "slack-oncall", "sent"),
        ]
    )


def dry_run(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """`alerts --dry-run`'s payload lines."""
    assert run_cli("alerts", "--dry-run", "--log-format", "json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["messages"] == len(lines) - 1
    return lines[:-1]


def test_a_dry_run_prints_what_the_next_run_would_send_and_sends_and_marks_nothing(
    simulator, alerting, receivers, warehouse, capsys, monkeypatch
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    alerting([])
    run_json(capsys)  # no receivers yet: nothing recorded
    configured = [receivers["json"].config(), receivers["feishu"].config()]
    monkeypatch.setenv("KPS_WAREHOUSE__ALERTS__RECEIVERS", json.dumps(configured))
    before = warehouse.read_bytes()

    first = dry_run(capsys)

    key = f"spike:{project_id}:keypair:kp-spike:2026-03-01"
    assert [(line["receiver"], line["keys"]) for line in first] == [
        ("json-oncall", [key]),
        ("feishu-oncall", [key]),
    ]
    assert first[0]["body"]["summary"].startswith("Failure spike: key pair kp-spike")
    assert first[0]["body"]["run_id"] == "(next run)"
    assert first[1]["body"]["content"]["text"].startswith("kps-warehouse: 1 new alert\n")
    assert "sign" not in first[1]["body"]  # signed when sent
    assert warehouse.read_bytes() == before
    assert [r.received for r in receivers.values()] == [[]] * 5

    receivers["feishu"].fail_with = 500
    run_json(capsys)
    configured.append(receivers["wecom"].config())
    monkeypatch.setenv("KPS_WAREHOUSE__ALERTS__RECEIVERS", json.dumps(configured))

    # feishu's is still pending; wecom, added since, gets the spike that is still current
    assert [(line["receiver"], line["keys"]) for line in dry_run(capsys)] == [
        ("feishu-oncall", [key]),
        ("wecom-oncall", [key]),
    ]
    assert [len(r.received) for r in receivers.values()] == [1, 0, 3, 0, 0]


def test_alerts_lists_the_deliveries_pending_first(
    simulator, alerting, receivers, warehouse, capsys
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    alerting([receivers["json"].config(), receivers["feishu"].config()])
    receivers["feishu"].fail_with = 500
    run_json(capsys)

    assert run_cli("alerts", "--log-format", "text") == 0

    key = f"spike:{project_id}:keypair:kp-spike:2026-03-01"
    assert capsys.readouterr().out.splitlines() == [
        f"pending  feishu-oncall    {key}  (3 attempts: HTTP 500)",
        f"{'':8} Failure spike: key pair kp-spike in project {project_id}: 12 failures on"
        " 2026-03-01, against 0.0 a day over the days before (z 12.0)",
        f"sent     json-oncall      {key}",
        f"{'':8} Failure spike: key pair kp-spike in project {project_id}: 12 failures on"
        " 2026-03-01, against 0.0 a day over the days before (z 12.0)",
        f"2 deliveries listed: 1 pending, 1 sent ({warehouse})",
    ]


def test_a_run_killed_while_sending_never_sends_that_event_again(
    simulator, alerting, receivers, warehouse, capsys
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    alerting([receivers["json"].config()])
    held = receivers["json"].hold = threading.Event()
    run = subprocess.Popen([CLI, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    assert receivers["json"].arrived.wait(60), "the run never sent"
    run.send_signal(signal.SIGKILL)  # the request is out, its answer not yet in
    run.communicate()
    receivers["json"].hold = None
    held.set()
    code, summary = run_json(capsys)

    # it may have been delivered: at most once means never again
    assert (code, summary["alerts"]) == (0, {"found": 0, "sent": 0, "failed": 0, "pending": 0})
    assert sent_keys(receivers["json"]) == [f"spike:{project_id}:keypair:kp-spike:2026-03-01"]
    assert query(
        warehouse, "select receiver, status, attempts, last_error from alerts.deliveries"
    ) == [("json-oncall", "unknown", 1, "a run ended while sending it")]


def test_a_slow_receiver_costs_the_run_its_budget_at_most_and_is_not_sent_twice(
    simulator, alerting, receivers, warehouse, capsys
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    alerting([receivers["json"].config(), receivers["slack"].config()], budget_seconds=1)
    receivers["json"].delay = 4

    code, summary = run_json(capsys)

    assert code == 0
    assert 0.9 < summary["phase_seconds"]["alerts"] < 2
    assert summary["alerts"] == {"found": 1, "sent": 1, "failed": 1, "pending": 0}
    assert query(
        warehouse, "select receiver, status, last_error from alerts.deliveries order by 1"
    ) == [
        ("json-oncall", "unknown", "no answer (ReadTimeoutError); not sent again"),
        ("slack-oncall", "sent", None),
    ]
    receivers["json"].delay = 0
    assert run_json(capsys)[1]["alerts"] == {"found": 0, "sent": 0, "failed": 0, "pending": 0}
    assert [len(r.received) for r in (receivers["json"], receivers["slack"])] == [1, 1]


@pytest.mark.parametrize(
    ("receivers_env", "message"),
    [
        (
            [{"url": "http://hooks.example.com/services/T0/B0/SECRETPART", "format": "slack"}],
            "receivers[0]: url must be https:// (plain http only to loopback)",
        ),
        (
            [{"name": "team", "url": "https://hooks.example.com/SECRETPART", "format": "teams"}],
            "receivers[0] (team): format must be one of json, slack, feishu, dingtalk, wecom",
        ),
        (
            [{"url": "https://hooks.example.com/SECRETPART", "format": "wecom", "secret": "x"}],
            "receivers[0]: wecom webhooks are not signed; remove the secret",
        ),
        (
            [{"url": "https://hooks.example.com/SECRETPART", "format": "json", "events": ["x"]}],
            "receivers[0]: events must be a list of spike, new_error_code, project_failing,"
            " project_recovered",
        ),
        ("[{not json", "receivers is not a JSON list"),
    ],
)
def test_a_receiver_that_cannot_work_exits_2_before_loading_and_never_quotes_its_url(
    simulator, alerting, capsys, monkeypatch, receivers_env, message
):
    simulator.add_project(tasks=5)
    alerting([])
    text = receivers_env if isinstance(receivers_env, str) else json.dumps(receivers_env)
    monkeypatch.setenv("KPS_WAREHOUSE__ALERTS__RECEIVERS", text)

    assert run_cli("run", "--log-format", "text") == 2

    err = capsys.readouterr().err
    assert err == f"kps-warehouse: configuration: kps_warehouse.alerts.{message}\n"
    assert "SECRETPART" not in err
    assert simulator.requests == []


def test_no_webhook_url_or_secret_reaches_the_output_the_files_or_the_warehouse(
    simulator, alerting, receivers, warehouse, tmp_path
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    configured = [r.config() for r in receivers.values()]
    configured[0]["secret"] = "json-" + uuid.uuid4().hex  # json receivers may sign too
    alerting(configured, budget_seconds=2)
    receivers["slack"].fail_with = 500  # its errors are recorded
    receivers["wecom"].delay = 5  # and its timeout
    secrets = [r["url"] for r in configured] + [r.token for r in receivers.values()]
    secrets += [r["secret"] for r in configured if "secret" in r]

    outputs = []
    commands = (["run"], ["--debug", "run", "--log-format", "text"], ["alerts"])
    for args in (*commands, ["alerts", "--dry-run"]):
        done = subprocess.run([CLI, *args], capture_output=True, text=True)
        outputs += [done.stdout, done.stderr]

    [signed] = receivers["json"].received
    timestamp = signed.headers["X-Kps-Warehouse-Timestamp"]
    digest = hmac.new(
        configured[0]["secret"].encode(), f"{timestamp}.".encode() + signed.raw, "sha256"
    )
    assert signed.headers["X-Kps-Warehouse-Signature"] == f"sha256={digest.hexdigest()}"
    assert query(
        warehouse, "select status, count(*) from alerts.deliveries group by 1 order by 1"
    ) == [("pending", 1), ("sent", 3), ("unknown", 1)]
    assert "\nalerts: 0 new events found; 0 sent, 1 failed, 1 pending\n" in outputs[2]
    assert outputs[-2].startswith("slack-oncall (slack): POST <url redacted>, 1 events\n{")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "kps.duckdb" for p in written)
    assert any(".dlt" in p.parts for p in written)  # dlt's working folder, traces and state
    for secret in secrets:
        for stream in outputs:
            assert secret not in stream
        for path in written:
            assert secret.encode() not in path.read_bytes(), path
    for secret in secrets:
        assert text_columns_holding(warehouse, secret) == []


def test_receivers_come_from_secrets_toml_and_are_refused_in_config_toml(
    simulator, alerting, receivers, warehouse, monkeypatch
):
    project_id = simulator.add_project(tasks=300)
    add_spike(simulator, project_id, "kp-spike", MARCH_1)
    add_spike(simulator, project_id, "kp-maintained", MARCH_1 + 6 * 3_600_000)
    alerting([])
    monkeypatch.delenv("KPS_WAREHOUSE__ALERTS__RECEIVERS")
    dlt_dir = Path(".dlt")
    dlt_dir.mkdir()
    (dlt_dir / "secrets.toml").write_text(
        f"""
[[kps_warehouse.alerts.receivers]]
name = "ops"
format = "feishu"
url = "{receivers["feishu"].url}"
secret = "{receivers["feishu"].secret}"
"""
    )
    mutes = '[{key = "spike:*:kp-maintained:*", until = 2999-01-01T00:00:00Z}]'
    (dlt_dir / "config.toml").write_text(f"[kps_warehouse.alerts]\nmutes = {mutes}\n")

    # new processes: dlt reads the TOML files once per process
    done = subprocess.run([CLI, "run", "--log-format", "json"], capture_output=True, text=True)
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["alerts"] == {"found": 2, "sent": 1, "failed": 0, "pending": 0}
    [message] = receivers["feishu"].received
    assert feishu_signed(message.body, receivers["feishu"].secret)
    assert "kp-spike" in message.body["content"]["text"]

    (dlt_dir / "config.toml").write_text((dlt_dir / "secrets.toml").read_text())
    (dlt_dir / "secrets.toml").unlink()
    done = subprocess.run([CLI, "run", "--log-format", "text"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (
        "kps-warehouse: configuration: kps_warehouse.alerts.receivers holds webhook URLs, which"
        " are secrets: set it in .dlt/secrets.toml or KPS_WAREHOUSE__ALERTS__RECEIVERS, not in"
        " config.toml\n"
    )


def test_alerts_has_help():
    done = subprocess.run([CLI, "alerts", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: kps-warehouse alerts [-h] [--dry-run] [--limit N]")


def test_alerts_that_cannot_work_are_reported_and_the_load_is_published_as_without_them(
    simulator, alerting, receivers, warehouse, writer, capsys
):
    project_id = simulator.add_project(tasks=300)
    alerting([receivers["json"].config()])
    run_json(capsys)
    with duckdb.connect(str(writer)) as con:  # a hand-made change that breaks the alert state
        con.execute("alter table alerts.deliveries drop column last_error")
    add_spike(simulator, project_id, "kp-spike", MARCH_1)

    code = run_cli("run", "--log-format", "text")

    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "kps-warehouse: alerts: BinderException: Binder Error: Referenced update column"
        " last_error not found in table! (the run's data and exit code are unaffected)"
    ]
    assert query(warehouse, "select failures from marts.failure_spikes where key = 'kp-spike'") == [
        (12,)
    ]
    assert receivers["json"].received == []
