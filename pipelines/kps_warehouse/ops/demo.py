"""The demo: a seeded simulator with months of failures, two runs with the API changing between."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kps_simulator import Simulator
from kps_warehouse.connection import connect
from kps_warehouse.source import KpsCredentials

SEED = 2026
# (region, tasks): one project past a page boundary, one empty, two regions.
PROJECTS = (("cn-north-4", 2_400), ("cn-north-4", 800), ("ap-southeast-1", 1_300), ("cn-east-3", 0))


@contextmanager
def simulator() -> Iterator[Simulator]:
    """The demo's simulator, serving on a free loopback port until the block ends."""
    sim = Simulator(seed=SEED)
    for region, tasks in PROJECTS:
        sim.add_project(region=region, tasks=tasks)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def source_args(sim: Simulator) -> dict[str, Any]:
    """The kps source's settings for this simulator, overriding any configuration."""
    by_region: dict[str, list[str]] = {}
    for project_id, region in sim.projects().items():
        by_region.setdefault(region, []).append(project_id)
    return {
        "endpoint": sim.endpoint,
        "projects": by_region,
        "project_ids": None,
        "region": None,
        "credentials": KpsCredentials(auth_token=sim.token),
    }


def change_the_api(sim: Simulator) -> None:
    """Between the demo's runs users delete some failed tasks and new ones fail."""
    rng = random.Random(SEED)
    for project_id in sim.projects():
        listed = len(sim.tasks(project_id))
        if listed:
            sim.delete_tasks(project_id, n=max(1, listed // 10))
        sim.add_tasks(project_id, rng.randint(5, 40))


def summary(warehouse: Path, top: int = 5) -> list[str]:
    """Top key pairs, servers and error codes of the last 30 days, as lines to print: read from
    `marts.failure_hotspots`, whose 30 days are the report's (ending on the latest day in the
    data)."""
    lines: list[str] = []
    dimensions = {"key pairs": "keypair", "servers": "server", "error codes": "error_code"}
    with connect(warehouse) as con:
        (latest,) = con.execute("select max(failed_day) from marts.fct_failed_tasks").fetchone()
        for title, dimension in dimensions.items():
            rows = con.execute(
                """
                select key_label, sum(failures) as failures, sum(open_tasks) as open_tasks
                from marts.failure_hotspots
                where dimension = ? and window_days = 30
                group by key_label
                order by failures desc, key_label
                limit ?
                """,
                [dimension, top],
            ).fetchall()
            lines.append(
                f"top {title} (30 days to {latest}): "
                + ", ".join(f"{name} {failures} ({open_} open)" for name, failures, open_ in rows)
            )
    return lines
