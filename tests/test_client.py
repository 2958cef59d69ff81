"""The client's reads of a project over real HTTP: what each pass parses and what it reuses."""

from __future__ import annotations

import pytest

from kps_warehouse.source.auth import TokenAuth
from kps_warehouse.source.client import KpsClient, Project
from kps_warehouse.source.settings import MAX_OFFSET


def read_one(simulator, project_id: str, on_page=None):
    client = KpsClient(simulator.endpoint, TokenAuth(simulator.token))
    [read] = client.read_projects([Project(project_id, "cn-north-4")], "run-1", on_page)
    return read


def test_a_second_pass_parses_no_page_that_came_back_the_same(simulator):
    # `total` is capped at 1000, so a longer list is read until two passes agree
    project_id = simulator.add_project(tasks=2_500)

    read = read_one(simulator, project_id)

    assert (read.complete, read.passes, read.pages, read.parsed) == (True, 2, 6, 3)
    assert read.tasks_seen == 2_500
    assert sum(len(page) for page in read.batch.take_pages()) == 2_500


def test_a_page_that_changed_between_passes_is_parsed_again(simulator):
    project_id = simulator.add_project(tasks=2_500)
    gone = simulator.tasks(project_id)[-1]["task_id"]

    def delete_once(project, size):  # called for each page once its pass has been read
        if gone in {t["task_id"] for t in simulator.tasks(project_id)}:
            simulator.delete_tasks(project_id, ids=[gone])

    read = read_one(simulator, project_id, delete_once)

    # the first pass parses its three pages; the second only the last, which lost a task;
    # the third agrees with the second and parses nothing
    assert (read.complete, read.passes, read.pages, read.parsed) == (True, 3, 9, 4)
    assert read.tasks_seen == 2_499
    taken = [row for page in read.batch.take_pages() for row in page["task_id"].to_pylist()]
    assert len(taken) == 2_499 and gone not in taken


def test_a_retry_after_longer_than_the_backoff_cap_waits_only_the_cap(simulator):
    project = Project(simulator.add_project(tasks=3), "cn-north-4")
    simulator.configure(throttle_rate=1, retry_after=5)
    client = KpsClient(
        simulator.endpoint,
        TokenAuth(simulator.token),
        max_retries=2,
        backoff_seconds=0.01,
        max_backoff_seconds=0.3,
    )

    [read] = client.read_projects([project], "run-1")

    starts = [arrived for arrived, _ in simulator.request_times]
    ends = [left for _, left in simulator.request_times]
    waits = [start - end for start, end in zip(starts[1:], ends, strict=False)]
    assert len(waits) == 2 and all(0.3 <= wait < 1.0 for wait in waits), waits
    assert read.error is not None and read.error.startswith("429 APIGW.0308")


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        ({"throttle_rate": 1, "retry_after": None}, "429 APIGW.0308"),
        ({"error_rate": 1}, "500 KPS.0004 Response error"),
    ],
)
def test_a_persistent_429_or_5xx_fails_the_project_after_the_last_retry(simulator, faults, error):
    project = Project(simulator.add_project(tasks=3), "cn-north-4")
    simulator.configure(**faults)
    client = KpsClient(
        simulator.endpoint, TokenAuth(simulator.token), max_retries=3, backoff_seconds=0.01
    )

    [read] = client.read_projects([project], "run-1")

    assert [status for _, _, status in simulator.requests] == [int(error[:3])] * 4
    assert read.error is not None and read.error.startswith(error)
    assert (read.complete, len(read.batch)) == (False, 0)


def test_paging_stops_at_the_apis_offset_ceiling_and_trusts_nothing_past_it(simulator):
    project_id = simulator.add_project(tasks=MAX_OFFSET + 1_500)

    read = read_one(simulator, project_id)

    offsets = [int(target.rsplit("offset=", 1)[1]) for _, target, _ in simulator.requests]
    assert max(offsets) == MAX_OFFSET == 100_000
    assert all(status == 200 for _, _, status in simulator.requests)
    assert (read.ok, read.complete, read.passes) == (True, False, 1)
    assert read.tasks_seen == MAX_OFFSET + 1_000
    assert f"the API's offset ceiling ({MAX_OFFSET}) was reached" in read.notes
