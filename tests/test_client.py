"""The client's reads of a project over real HTTP: what each pass parses and what it reuses."""

from __future__ import annotations

from kps_warehouse.source.auth import TokenAuth
from kps_warehouse.source.client import KpsClient, Project


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
