"""Credentials, all three ways: token, IAM password (with refresh), AK/SK signatures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kps_warehouse.source.auth import PasswordAuth, sign
from kps_warehouse.source.client import KpsClient, Project

from .conftest import query, run_cli

# Produced by Huawei's official huaweicloudsdkcore 3.1.219 (`signer.Signer(BasicCredentials(AK,
# SK)).sign(SdkRequest(...))`) for the same requests, so our signer is checked against theirs.
AK, SK = "AKEXAMPLE0123456789", "skExampleSecretKey/With+Chars="
PROJECT = "0123456789abcdef0123456789abcdef"
OFFICIAL = [
    (
        f"https://kms.cn-north-4.myhuaweicloud.com/v3/{PROJECT}/failed-tasks?limit=1000&offset=0",
        datetime(2026, 11, 30, 5, 15, tzinfo=UTC),
        "c652f360338f40e0d1b8ea0c6092fac957d704e4021ed9f18b85e98b17481908",
    ),
    (
        f"http://127.0.0.1:8765/cn-north-4/v3/{PROJECT}/failed-tasks?offset=2000&limit=500",
        datetime(2026, 3, 1, tzinfo=UTC),
        "1b3851496e4b2a73a631cb5755b6e24e337c2ec759c097bec4df1b05559291ec",
    ),
]


@pytest.mark.parametrize(("url", "now", "signature"), OFFICIAL)
def test_our_signature_equals_the_official_sdks(url, now, signature):
    headers = sign("GET", url, {"X-Project-Id": PROJECT}, AK, SK, now)

    assert headers["Authorization"] == (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-project-id;x-sdk-date,"
        f" Signature={signature}"
    )
    assert headers["X-Sdk-Date"] == now.strftime("%Y%m%dT%H%M%SZ")


def test_a_run_signed_with_ak_sk_loads(simulator, configure, warehouse, monkeypatch):
    simulator.add_project(tasks=30)
    simulator.add_access_key(AK, SK)
    configure()
    monkeypatch.delenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN")
    monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__ACCESS_KEY", AK)
    monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__SECRET_KEY", SK)

    assert run_cli("run", "--no-transform") == 0

    assert query(warehouse, "select count(*) from kps_raw.failed_tasks") == [(30,)]


def test_a_wrong_secret_key_fails_after_one_request(simulator, configure, warehouse, monkeypatch):
    simulator.add_project(tasks=3)
    simulator.add_access_key(AK, SK)
    configure()
    monkeypatch.delenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN")
    monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__ACCESS_KEY", AK)
    monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__SECRET_KEY", "wrong")

    assert run_cli("run", "--no-transform") == 1

    assert [status for _, _, status in simulator.requests] == [401]


def test_a_run_with_an_iam_password_loads(simulator, configure, warehouse, monkeypatch):
    first = simulator.add_project(region="cn-north-4", tasks=12)
    second = simulator.add_project(region="ap-southeast-1", tasks=7)
    simulator.add_iam_user("ops", "pa55-word", "acme")
    configure()
    monkeypatch.delenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN")
    for key, value in {
        "USER_NAME": "ops",
        "PASSWORD": "pa55-word",
        "DOMAIN_NAME": "acme",
        "IAM_ENDPOINT": simulator.url,
    }.items():
        monkeypatch.setenv(f"SOURCES__KPS__CREDENTIALS__{key}", value)

    assert run_cli("run", "--no-transform") == 0

    counts = query(warehouse, "select project_id, count(*) from kps_raw.failed_tasks group by 1")
    assert sorted(counts) == sorted([(first, 12), (second, 7)])
    token_requests = [path for method, path, _ in simulator.requests if method == "POST"]
    assert token_requests == ["/v3/auth/tokens", "/v3/auth/tokens"]  # one token per project


def test_an_expired_token_is_refreshed_once_and_the_read_goes_on(simulator):
    project_id = simulator.add_project(tasks=5)
    simulator.add_iam_user("ops", "pa55-word", "acme")
    auth = PasswordAuth("ops", "pa55-word", "acme", simulator.url)
    client = KpsClient(simulator.endpoint, auth, backoff_seconds=0.01)
    project = Project(project_id, "cn-north-4")
    assert client.read_project(project, "run-1").ok
    simulator.expire_token()
    simulator.reset_counters()

    read = client.read_project(project, "run-2")

    assert read.ok and len(read.batch) == 5
    assert [(method, status) for method, _, status in simulator.requests] == [
        ("GET", 401),
        ("POST", 201),
        ("GET", 200),
    ]


def test_a_wrong_password_fails_the_project_in_one_line(simulator):
    project_id = simulator.add_project(tasks=5)
    simulator.add_iam_user("ops", "pa55-word", "acme")
    client = KpsClient(simulator.endpoint, PasswordAuth("ops", "guess", "acme", simulator.url))

    read = client.read_project(Project(project_id, "cn-north-4"), "run-1")

    assert read.error == (
        "IAM refused the password of ops: 401 APIGW.0301"
        " Incorrect IAM authentication information: the user name or password is incorrect."
    )
    assert "guess" not in read.error
