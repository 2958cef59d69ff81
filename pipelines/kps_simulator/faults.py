"""The faults a request can meet, drawn from a seeded RNG, and the broken bodies it can get."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from typing import Any

from kps_simulator.data import generate_tasks
from kps_simulator.replies import Reply, json_reply

BAD_BODIES = frozenset(
    {
        "html",
        "truncated",
        "not_json",
        "tasks_missing",
        "tasks_not_list",
        "total_missing",
        "total_negative",
        "oversized_page",
        "duplicate_ids",
        "not_utf8",
    }
)
# task_time as a JSON number is valid per the project's rules; the others are not.
MALFORMATIONS = ("missing_task_id", "task_time_not_a_time", "server_id_number", "task_time_number")


@dataclass
class Faults:
    """The fault switches of `Simulator.configure`; rates are per-request probabilities."""

    latency_ms: float = 0
    throttle_rate: float = 0
    error_rate: float = 0
    drop_rate: float = 0
    shift_rate: float = 0
    malformed_rate: float = 0
    bad_body: str | None = None
    retry_after: float | None = 0
    gzip: bool = False


@dataclass
class Fate:
    """What happens to one page request, drawn up front so the draws stay in a fixed order."""

    drop: bool
    throttle: bool
    error: bool
    shift: bool
    rng: random.Random  # further draws: which task shifts, which tasks are malformed


def draw_fate(faults: Faults, seed: int, key: str, attempt: int) -> Fate:
    """This request's faults, from (seed, path and query, how often it was asked)."""
    rng = random.Random(f"{seed}:{key}:{attempt}")
    return Fate(
        drop=rng.random() < faults.drop_rate,
        throttle=rng.random() < faults.throttle_rate,
        error=rng.random() < faults.error_rate,
        shift=rng.random() < faults.shift_rate,
        rng=rng,
    )


def maybe_malformed(task: dict, rng: random.Random, rate: float) -> dict:
    if rng.random() >= rate:
        return task
    kind = rng.choice(MALFORMATIONS)
    if kind == "missing_task_id":
        del task["task_id"]
    elif kind == "task_time_not_a_time":
        task["task_time"] = "not-a-time"
    elif kind == "server_id_number":
        task["server_id"] = rng.randrange(10**9)
    else:  # task_time_number: a JSON number, which the client is expected to accept
        task["task_time"] = int(task["task_time"])
    return task


def bad_body(
    kind: str,
    total: int,
    page: list[dict],
    spare: list[dict],
    limit: int,
    fate: Fate,
    now_ms: int,
) -> Reply:
    """A 200 whose body is broken in the named way."""
    if kind == "html":
        html = "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"
        return Reply(200, html.encode(), content_type="text/html;charset=UTF-8")
    if kind == "truncated":
        whole = json.dumps({"total": total, "tasks": page}, ensure_ascii=False).encode()
        return Reply(200, whole, cut_at=len(whole) // 2)
    if kind == "not_json":
        return Reply(200, b"upstream connect error or disconnect/reset before headers")
    if kind == "not_utf8":
        # A message in Latin-1 inside a body that says UTF-8: one byte no UTF-8 decoder accepts.
        whole = json.dumps({"total": total, "tasks": page}).encode()
        return Reply(200, whole.replace(b'"task_error_msg": "', b'"task_error_msg": "\xe9', 1))
    broken: dict[str, Any] = {"total": total, "tasks": page}
    if kind == "tasks_missing":
        del broken["tasks"]
    elif kind == "tasks_not_list":
        broken["tasks"] = {task.get("task_id", str(i)): task for i, task in enumerate(page)}
    elif kind == "total_missing":
        del broken["total"]
    elif kind == "total_negative":
        broken["total"] = -1
    elif kind == "oversized_page":
        # limit + 1 tasks: the next real one if there is one, else made-up filler.
        filler = generate_tasks(fate.rng, limit + 1 - len(page) - len(spare), now_ms=now_ms)
        broken["tasks"] = page + spare + filler
    elif kind == "duplicate_ids" and page:
        # Keep the page within limit when possible, so only the duplicate is wrong.
        if 1 < len(page) == limit:
            page[-1] = copy.deepcopy(page[0])
        else:
            page.append(copy.deepcopy(page[0]))
    return json_reply(200, broken)
