"""The simulator behaves like kps-api.md says KPS does, over real HTTP on loopback."""

from __future__ import annotations

import gzip
import http.client
import json
import random
import re
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from kps_simulator import Simulator, generate_project_id, generate_tasks
from kps_simulator.signature import expected_signature
from kps_warehouse.source.auth import sign

from .test_auth import AK, OFFICIAL, PROJECT, SK

NOW_MS = 1_750_000_000_000
TOKEN = "sim-token"
FIELDS = {
    "task_id",
    "operate_type",
    "task_time",
    "task_error_code",
    "task_error_msg",
    "server_name",
    "server_id",
    "keypair_name",
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class Answer:
    """One HTTP answer: status, headers and the raw body."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    sim: Simulator,
    path: str,
    *,
    token: str | None = TOKEN,
    method: str = "GET",
    body: dict | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request with urllib; error statuses are answers too, not exceptions."""
    headers = {**({"X-Auth-Token": token} if token else {}), **(headers or {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(sim.url + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


def page(sim: Simulator, project_id: str, query: str = "", **kwargs: Any) -> Answer:
    return call(sim, f"/v3/{project_id}/failed-tasks{query}", **kwargs)


def error_of(answer: Answer) -> tuple[int, str]:
    return answer.status, answer.json()["error_code"]


def malformation(task: dict) -> str:
    """Which of the simulator's four corruptions this task carries."""
    if "task_id" not in task:
        return "missing_task_id"
    if task["task_time"] == "not-a-time":
        return "not_a_time"
    if isinstance(task["task_time"], int):
        return "number_time"
    if isinstance(task["server_id"], int):
        return "number_server_id"
    return "intact"


def password_body(user: str, password: str, domain: str, project_id: str | None) -> dict:
    body: dict = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "password": password, "domain": {"name": domain}}
                },
            }
        }
    }
    if project_id is not None:
        body["auth"]["scope"] = {"project": {"id": project_id}}
    return body


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(now_ms=NOW_MS) as simulator:
        yield simulator


# data


def test_generated_tasks_have_exactly_the_api_shape() -> None:
    tasks = generate_tasks(random.Random(1), 500, now_ms=NOW_MS, days=120)

    assert len(tasks) == 500
    assert all(set(task) == FIELDS for task in tasks)
    assert all(
        UUID.fullmatch(task["task_id"]) and UUID.fullmatch(task["server_id"]) for task in tasks
    )
    assert all(isinstance(task["task_time"], str) for task in tasks)
    times = [int(task["task_time"]) for task in tasks]
    assert min(times) >= NOW_MS - 120 * 86_400_000 and max(times) < NOW_MS
    assert len({task["task_id"] for task in tasks}) == 500


def test_generated_tasks_look_like_real_failures() -> None:
    tasks = generate_tasks(random.Random(1), 2000, now_ms=NOW_MS)
    types = Counter(task["operate_type"] for task in tasks)
    no_code = sum(task["task_error_code"] is None for task in tasks) / len(tasks)
    keypairs = Counter(task["keypair_name"] for task in tasks).most_common()
    per_day = Counter((int(task["task_time"]) // 86_400_000, task["server_id"]) for task in tasks)

    assert set(types) == {
        "FAILED_RESET",
        "FAILED_REPLACE",
        "FAILED_UNBIND",
        "FAILED_BIND",
        "RUNNING_RESET",
    }
    assert types["RUNNING_RESET"] < types["FAILED_BIND"] < types["FAILED_UNBIND"]
    assert 0.12 < no_code < 0.18
    assert 5 <= len(keypairs) <= 20 and keypairs[0][1] > 3 * keypairs[-1][1]
    assert max(per_day.values()) >= 10  # a burst: one server failing again and again in a day
    assert any(not task["task_error_msg"].isascii() for task in tasks if task["task_error_msg"])


def test_generation_is_deterministic_for_the_same_rng_state() -> None:
    first = generate_tasks(random.Random(42), 50, now_ms=NOW_MS)

    assert generate_tasks(random.Random(42), 50, now_ms=NOW_MS) == first
    assert generate_tasks(random.Random(43), 50, now_ms=NOW_MS) != first


def test_a_generated_project_id_is_32_lowercase_hex() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", generate_project_id(random.Random(0)))


# paging


def test_pages_are_consecutive_slices_of_the_newest_first_list(sim: Simulator) -> None:
    project = sim.add_project(tasks=7)
    served = sim.tasks(project)

    pages = [page(sim, project, f"?limit=3&offset={offset}").json() for offset in (0, 3, 6)]

    assert [p["tasks"] for p in pages] == [served[0:3], served[3:6], served[6:7]]
    assert [p["total"] for p in pages] == [7, 7, 7]
    times = [int(task["task_time"]) for task in served]
    assert times == sorted(times, reverse=True)


def test_equal_times_are_ordered_by_task_id(sim: Simulator) -> None:
    base = generate_tasks(random.Random(3), 3, now_ms=NOW_MS)
    tied = [{**task, "task_time": "1700000000000"} for task in base]
    project = sim.add_project(tasks=tied)

    ids = [task["task_id"] for task in page(sim, project).json()["tasks"]]

    assert ids == sorted(task["task_id"] for task in base)


def test_a_page_past_the_end_is_empty_with_status_200(sim: Simulator) -> None:
    project = sim.add_project(tasks=4)

    answer = page(sim, project, "?limit=2&offset=4")

    assert (answer.status, answer.json()) == (200, {"total": 4, "tasks": []})


def test_limit_and_offset_default_to_1000_and_0(sim: Simulator) -> None:
    project = sim.add_project(tasks=1001)

    tasks = page(sim, project).json()["tasks"]

    assert tasks == sim.tasks(project)[:1000]


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0",
        "?limit=1001",
        "?offset=-1",
        "?limit=abc",
        "?offset=100001",
        "?limit=",
        "?limit=1.5",
    ],
)
def test_an_out_of_range_or_non_integer_parameter_is_400_kps_0002(
    sim: Simulator, query: str
) -> None:
    project = sim.add_project(tasks=1)

    answer = page(sim, project, query)

    assert answer.json() == {"error_code": "KPS.0002", "error_msg": "parameter error"}
    assert answer.status == 400


def test_the_edges_of_the_documented_ranges_are_accepted(sim: Simulator) -> None:
    project = sim.add_project(tasks=2)

    assert page(sim, project, "?limit=1000&offset=100000").json() == {"total": 2, "tasks": []}
    assert len(page(sim, project, "?limit=1&offset=0").json()["tasks"]) == 1


def test_total_is_capped_at_1000_but_every_task_can_still_be_paged(sim: Simulator) -> None:
    project = sim.add_project(tasks=2500)

    pages = [page(sim, project, f"?offset={offset}").json() for offset in (0, 1000, 2000)]

    assert [p["total"] for p in pages] == [1000, 1000, 1000]
    assert [len(p["tasks"]) for p in pages] == [1000, 1000, 500]
    assert len({task["task_id"] for p in pages for task in p["tasks"]}) == 2500


def test_without_a_cap_total_is_exact() -> None:
    with Simulator(now_ms=NOW_MS, total_cap=None) as sim:
        project = sim.add_project(tasks=1200)
        assert page(sim, project, "?limit=1").json()["total"] == 1200


def test_bodies_are_utf8_json_with_the_gateway_content_type(sim: Simulator) -> None:
    tasks = generate_tasks(random.Random(0), 1, now_ms=NOW_MS)
    tasks[0]["task_error_msg"] = "更新公钥失败"
    project = sim.add_project(tasks=tasks)

    answer = page(sim, project)

    assert answer.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert "更新公钥失败".encode() in answer.body


# errors and routing


def test_no_token_is_401_apigw_0301(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)

    assert error_of(page(sim, project, token=None)) == (401, "APIGW.0301")


def test_a_wrong_token_is_401_apigw_0301_even_for_an_unknown_project(sim: Simulator) -> None:
    assert error_of(page(sim, "no-such-project", token="wrong")) == (401, "APIGW.0301")


def test_an_expired_token_is_401_apigw_0307(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    sim.expire_token()

    answer = page(sim, project)

    assert answer.json() == {"error_code": "APIGW.0307", "error_msg": "The token has expired."}


def test_an_unknown_project_is_403_apigw_0310(sim: Simulator) -> None:
    answer = page(sim, "0" * 32)

    assert answer.status == 403
    assert answer.json() == {"error_code": "APIGW.0310", "error_msg": "The project is unavailable."}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v3/{p}/running-tasks"),
        ("GET", "/v3/{p}/failed-tasks/x"),
        ("POST", "/v3/{p}/failed-tasks"),
    ],
)
def test_any_other_path_or_method_is_404_apigw_0101(sim: Simulator, method: str, path: str) -> None:
    project = sim.add_project(tasks=1)

    answer = call(sim, path.format(p=project), method=method, body={} if method == "POST" else None)

    assert error_of(answer) == (404, "APIGW.0101")


def test_a_region_prefix_serves_only_that_regions_projects(sim: Simulator) -> None:
    north = sim.add_project(region="cn-north-4", tasks=2)
    east = sim.add_project(region="cn-east-3", tasks=3)

    assert page(sim, north, "", token=TOKEN).json()["total"] == 2
    assert call(sim, f"/cn-east-3/v3/{east}/failed-tasks").json()["total"] == 3
    assert error_of(call(sim, f"/cn-east-3/v3/{north}/failed-tasks")) == (403, "APIGW.0310")
    assert sim.endpoint.format(region="cn-east-3") == f"{sim.url}/cn-east-3"


# state


def test_the_same_seed_serves_the_same_projects_and_tasks() -> None:
    served = []
    for _ in range(2):
        with Simulator(seed=11, now_ms=NOW_MS) as sim:
            project = sim.add_project(tasks=20)
            served.append((project, page(sim, project).json()))

    assert served[0] == served[1]
    with Simulator(seed=12, now_ms=NOW_MS) as other:
        assert other.add_project(tasks=20) != served[0][0]


def test_added_tasks_are_served_and_dated_after_the_history(sim: Simulator) -> None:
    project = sim.add_project(tasks=5)

    added = sim.add_tasks(project, 2)
    tasks = page(sim, project).json()["tasks"]

    assert tasks[:2] == sorted(added, key=lambda t: (-int(t["task_time"]), t["task_id"]))
    assert len(tasks) == 7
    assert all(NOW_MS <= int(task["task_time"]) <= sim.now_ms for task in added)


def test_deleted_tasks_are_no_longer_served(sim: Simulator) -> None:
    project = sim.add_project(tasks=5)
    keep = sim.tasks(project)

    gone = sim.delete_tasks(project, n=2)
    gone += sim.delete_tasks(project, ids=[keep[0]["task_id"]])
    served = page(sim, project).json()["tasks"]

    assert len(gone) == 3 and keep[0] in gone
    assert served == [task for task in keep if task not in gone]


def test_adding_a_task_id_twice_is_refused(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)

    with pytest.raises(ValueError, match="unique"):
        sim.add_tasks(project, sim.tasks(project))


# faults


def test_throttling_answers_429_apigw_0308_with_retry_after(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    sim.configure(throttle_rate=1, retry_after=2)

    answer = page(sim, project)

    assert error_of(answer) == (429, "APIGW.0308")
    assert answer.headers["Retry-After"] == "2"


def test_throttling_without_retry_after_sends_no_header(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    sim.configure(throttle_rate=1, retry_after=None)

    assert page(sim, project).headers.get("Retry-After") is None


def test_server_errors_answer_500_kps_0004(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    sim.configure(error_rate=1)

    assert page(sim, project).json() == {"error_code": "KPS.0004", "error_msg": "Response error"}


def test_a_dropped_request_closes_the_socket_and_is_logged_with_status_0(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    sim.configure(drop_rate=1)

    with pytest.raises(http.client.RemoteDisconnected):
        page(sim, project)
    assert sim.requests == [("GET", f"/v3/{project}/failed-tasks", 0)]


def test_injected_faults_replay_identically_from_the_seed() -> None:
    runs = []
    for _ in range(2):
        with Simulator(seed=5, now_ms=NOW_MS) as sim:
            project = sim.add_project("p" * 32, tasks=3)
            sim.configure(throttle_rate=0.3, error_rate=0.3)
            runs.append([page(sim, project, f"?limit={n}").status for n in (1, 2, 3) * 5])

    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 429, 500}


def test_a_shifting_list_gains_or_loses_one_task_per_request(sim: Simulator) -> None:
    project = sim.add_project(tasks=10)
    sim.configure(shift_rate=1)

    totals = [page(sim, project, "?limit=1").json()["total"] for _ in range(8)]

    steps = [after - before for before, after in zip([10, *totals], totals, strict=False)]
    assert set(steps) == {-1, 1}


def test_replaying_a_shift_after_configure_adds_a_fresh_task(sim: Simulator) -> None:
    project = sim.add_project(tasks=10)
    sizes = []
    for _ in range(3):
        sim.configure(shift_rate=1)  # replays the same request RNGs
        sizes += [page(sim, project, "?limit=1").json()["total"] for _ in range(6)]

    assert len(sim.tasks(project)) == sizes[-1]
    assert all(status == 200 for _, _, status in sim.requests)


def test_malformed_tasks_are_one_of_the_four_variants(sim: Simulator) -> None:
    project = sim.add_project(tasks=40)
    sim.configure(malformed_rate=1)

    tasks = page(sim, project).json()["tasks"]

    kinds = Counter(malformation(task) for task in tasks)

    assert set(kinds) == {"missing_task_id", "not_a_time", "number_time", "number_server_id"}
    assert sim.tasks(project)[0]["task_time"].isdigit()  # the stored tasks stay intact


@pytest.mark.parametrize(
    ("kind", "broken"),
    [
        ("tasks_missing", lambda body: "tasks" not in body),
        ("tasks_not_list", lambda body: isinstance(body["tasks"], dict)),
        ("total_missing", lambda body: "total" not in body),
        ("total_negative", lambda body: body["total"] == -1),
        ("oversized_page", lambda body: len(body["tasks"]) == 3),
        ("duplicate_ids", lambda body: len({t["task_id"] for t in body["tasks"]}) == 1),
    ],
)
def test_a_bad_json_body_is_broken_in_the_named_way(sim: Simulator, kind: str, broken: Any) -> None:
    project = sim.add_project(tasks=5)
    sim.configure(bad_body=kind)

    answer = page(sim, project, "?limit=2")

    assert answer.status == 200
    assert broken(answer.json())


def test_an_html_body_is_served_with_status_200(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    sim.configure(bad_body="html")

    answer = page(sim, project)

    assert (answer.status, answer.headers["Content-Type"]) == (200, "text/html;charset=UTF-8")
    assert answer.body.startswith(b"<html>")


def test_a_not_json_body_does_not_parse(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    sim.configure(bad_body="not_json")

    with pytest.raises(json.JSONDecodeError):
        page(sim, project).json()


def test_a_truncated_body_ends_before_its_content_length(sim: Simulator) -> None:
    project = sim.add_project(tasks=3)
    sim.configure(bad_body="truncated")

    with pytest.raises(http.client.IncompleteRead):
        page(sim, project)


def test_answers_are_gzipped_when_switched_on_and_the_client_accepts_it(sim: Simulator) -> None:
    project = sim.add_project(tasks=3)
    plain = page(sim, project).body
    sim.configure(gzip=True)

    def get(accept_encoding: str | None) -> tuple[str | None, bytes]:
        headers = {"X-Auth-Token": TOKEN}
        if accept_encoding:
            headers["Accept-Encoding"] = accept_encoding
        request = urllib.request.Request(f"{sim.url}/v3/{project}/failed-tasks", None, headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.headers.get("Content-Encoding"), response.read()

    assert get(None) == (None, plain)
    encoding, body = get("gzip, deflate")
    assert encoding == "gzip" and gzip.decompress(body) == plain
    assert sim.gzipped == 1


# IAM


def test_a_password_buys_a_token_that_kps_accepts(sim: Simulator) -> None:
    project = sim.add_project(tasks=2)
    sim.add_iam_user("alice", "s3cret", "acme")

    answer = call(
        sim,
        "/v3/auth/tokens",
        method="POST",
        token=None,
        body=password_body("alice", "s3cret", "acme", project),
    )
    token = answer.headers["X-Subject-Token"]

    assert answer.status == 201
    assert answer.json()["token"]["project"] == {"id": project, "name": "cn-north-4"}
    assert answer.json()["token"]["expires_at"].endswith("Z")
    assert page(sim, project, token=token).json()["total"] == 2


def test_a_wrong_password_is_401_apigw_0301(sim: Simulator) -> None:
    project = sim.add_project()
    sim.add_iam_user("alice", "s3cret", "acme")

    answer = call(
        sim,
        "/v3/auth/tokens",
        method="POST",
        token=None,
        body=password_body("alice", "nope", "acme", project),
    )

    assert error_of(answer) == (401, "APIGW.0301")


def test_a_token_works_only_in_its_own_region(sim: Simulator) -> None:
    north = sim.add_project(region="cn-north-4")
    east = sim.add_project(region="cn-east-3")
    sim.add_iam_user("alice", "s3cret", "acme")
    body = password_body("alice", "s3cret", "acme", north)
    token = call(sim, "/v3/auth/tokens", method="POST", token=None, body=body).headers[
        "X-Subject-Token"
    ]

    assert error_of(page(sim, east, token=token)) == (401, "APIGW.0307")


def test_projects_are_listed_with_their_region_as_name(sim: Simulator) -> None:
    north = sim.add_project(region="cn-north-4")
    east = sim.add_project("e" * 32, region="cn-east-3")

    answer = call(sim, "/v3/auth/projects")

    assert answer.json() == {
        "projects": [
            {"id": north, "name": "cn-north-4", "enabled": True},
            {"id": east, "name": "cn-east-3", "enabled": True},
        ]
    }
    assert error_of(call(sim, "/v3/auth/projects", token="wrong")) == (401, "APIGW.0301")


# AK/SK signatures


@pytest.mark.parametrize(("url", "now", "signature"), OFFICIAL)
def test_the_gateways_signature_check_computes_what_the_official_sdk_signs(url, now, signature):
    parts = urlsplit(url)
    received = {
        "host": parts.netloc,
        "x-project-id": PROJECT,
        "x-sdk-date": now.strftime("%Y%m%dT%H%M%SZ"),
    }
    signed = ("host", "x-project-id", "x-sdk-date")

    assert expected_signature(SK, "GET", f"{parts.path}?{parts.query}", received, signed) == (
        signature
    )


def signed_headers(sim: Simulator, path: str) -> dict[str, str]:
    """Headers of a request to `path` signed now by the client's signer (sent with urllib,
    which sends Host as it was signed)."""
    headers = sign("GET", sim.url + path, {}, AK, SK, datetime.now(UTC))
    return {name: value for name, value in headers.items() if name != "Host"}


def test_a_signed_request_is_answered_and_one_whose_query_changed_is_refused(sim: Simulator):
    project = sim.add_project(tasks=3)
    sim.add_access_key(AK, SK)
    path = f"/v3/{project}/failed-tasks?offset=0&limit=2"
    headers = signed_headers(sim, path)

    good = call(sim, path, token=None, headers=headers)
    tampered = call(sim, path.replace("limit=2", "limit=3"), token=None, headers=headers)

    assert good.status == 200 and len(good.json()["tasks"]) == 2
    assert error_of(tampered) == (401, "APIGW.0301")
    assert "verify aksk signature fail" in tampered.json()["error_msg"]


def test_five_failed_signatures_in_a_row_lock_the_access_key(sim: Simulator):
    project = sim.add_project(tasks=3)
    sim.add_access_key(AK, SK)
    path = f"/v3/{project}/failed-tasks"
    wrong = {**signed_headers(sim, path), "X-Sdk-Date": "20200101T000000Z"}  # too old

    failures = [error_of(call(sim, path, token=None, headers=wrong)) for _ in range(5)]
    locked = call(sim, path, token=None, headers=signed_headers(sim, path))

    assert failures == [(401, "APIGW.0301")] * 5
    assert error_of(locked) == (401, "APIGW.0301")
    assert "locked" in locked.json()["error_msg"]


# observability and lifecycle


def test_peak_concurrency_counts_parallel_requests(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    sim.configure(latency_ms=300)
    sim.reset_counters()

    threads = [threading.Thread(target=page, args=(sim, project)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sim.peak_concurrency == 5
    assert [status for _, _, status in sim.requests] == [200] * 5


def test_requests_are_logged_in_order_and_reset(sim: Simulator) -> None:
    project = sim.add_project(tasks=1)
    page(sim, project, "?limit=1")
    page(sim, project, token=None)

    assert sim.requests == [
        ("GET", f"/v3/{project}/failed-tasks?limit=1", 200),
        ("GET", f"/v3/{project}/failed-tasks", 401),
    ]
    sim.reset_counters()
    assert (sim.requests, sim.peak_concurrency) == ([], 0)


def test_start_binds_the_requested_port() -> None:
    with Simulator() as probe:
        port = probe.port
    sim = Simulator().start(port)
    try:
        assert sim.url == f"http://127.0.0.1:{port}"
        assert error_of(call(sim, "/")) == (404, "APIGW.0101")
    finally:
        sim.stop()


def test_pages_follow_every_change_byte_for_byte(sim: Simulator) -> None:
    project = sim.add_project(tasks=5)

    bodies = [page(sim, project).body]
    sim.add_tasks(project, 2)
    bodies.append(page(sim, project).body)
    sim.delete_tasks(project, n=3)
    bodies.append(page(sim, project).body)

    served = sim.tasks(project)
    expected = json.dumps({"total": 4, "tasks": served}, ensure_ascii=False).encode()
    assert bodies[2] == expected
    assert [json.loads(b)["total"] for b in bodies] == [5, 7, 4]
