"""A project's failed tasks as the API lists them, and the paging of that list."""

from __future__ import annotations

import bisect
import copy
import json
import random
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from kps_simulator.data import Pool
from kps_simulator.errors import parameter_error

LIMIT_RANGE = (1, 1000)
OFFSET_RANGE = (0, 100_000)
DEFAULT_LIMIT = 1000
DIGITS = re.compile(r"[0-9]+")


@dataclass
class Project:
    """One project's region and its current failed tasks, kept in served order."""

    region: str
    rng: random.Random
    pool: Pool
    tasks: list[dict] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    # Each task as JSON bytes, in step with `tasks`: a plain page costs a join instead of a
    # deep copy and an encode, so the simulator is not what limits a benchmark's client.
    encoded: list[bytes] = field(default_factory=list)


def served_order(task: dict) -> tuple[int, str]:
    """Newest task_time first, then task_id; odd hand-made tasks sort last instead of failing."""
    try:
        time_ms = int(task["task_time"])
    except (KeyError, TypeError, ValueError):
        time_ms = 0
    return -time_ms, str(task.get("task_id", ""))


def insert(project: Project, tasks: list[dict]) -> list[dict]:
    """Add tasks in served order; refuses ids already present. Caller holds the lock.

    Hand-made malformed records (no task_id, odd types) are served as they are, so that a
    client's handling of bad records can be tested.
    """
    ids = [task["task_id"] for task in tasks if isinstance(task.get("task_id"), str)]
    if len(set(ids)) != len(ids) or project.ids.intersection(ids):
        raise ValueError("a task_id must be unique within its project")
    added = copy.deepcopy(tasks)
    for task in added:
        at = bisect.bisect(project.tasks, served_order(task), key=served_order)
        project.tasks.insert(at, task)
        project.encoded.insert(at, json.dumps(task, ensure_ascii=False).encode())
    project.ids.update(ids)
    return added


def remove(project: Project, ids: list[str]) -> list[dict]:
    """Remove tasks by id, returning them. Caller holds the lock."""
    missing = [task_id for task_id in ids if task_id not in project.ids]
    if missing:
        raise KeyError(f"no such tasks: {missing}")
    wanted = set(ids)
    kept = [i for i, task in enumerate(project.tasks) if task.get("task_id") not in wanted]
    removed = [task for task in project.tasks if task.get("task_id") in wanted]
    project.tasks = [project.tasks[i] for i in kept]
    project.encoded = [project.encoded[i] for i in kept]
    project.ids -= wanted
    return removed


def plain_page(project: Project, total: int, offset: int, limit: int) -> bytes:
    """The page's body, byte for byte what `json_reply` makes of it. Caller holds the lock."""
    tasks = b", ".join(project.encoded[offset : offset + limit])
    return b'{"total": %d, "tasks": [%b]}' % (total, tasks)


def paging(query: str) -> tuple[int, int]:
    """limit and offset from the query string; 400 KPS.0002 when either is not a valid integer."""
    params = parse_qs(query, keep_blank_values=True)
    limit = integer_param(params.get("limit"), DEFAULT_LIMIT, LIMIT_RANGE)
    offset = integer_param(params.get("offset"), 0, OFFSET_RANGE)
    return limit, offset


def integer_param(values: list[str] | None, default: int, bounds: tuple[int, int]) -> int:
    if values is None:
        return default
    if len(values) != 1 or not DIGITS.fullmatch(values[0]):
        raise parameter_error()
    value = int(values[0])
    if not bounds[0] <= value <= bounds[1]:
        raise parameter_error()
    return value
