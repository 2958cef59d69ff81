"""Incremental equals full: after any sequence of runs, runs killed at any point among them,
every model a run built incrementally equals, row for row, what `transform` rebuilds from the
same raw tables."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from kps_simulator import Simulator
from kps_warehouse import crash_points, load
from kps_warehouse.transform import runner
from kps_warehouse.transform.runner import build_order

from .conftest import CLI, query

MODELS = build_order()
DAY_MS = 86_400_000
# A project id the simulator does not know: its every run fails.
UNKNOWN_PROJECT = "0" * 32
EXTRA_STEPS = 1


def every_model(path: Path) -> dict[str, list[tuple]]:
    return {m.relation: query(path, f"select * from {m.relation} order by all") for m in MODELS}


def differences(built: dict, expected: dict) -> dict[str, tuple[list, list]]:
    """Per model that differs, a few rows only the incremental build has and only the full one."""
    return {
        relation: (
            [row for row in rows if row not in expected[relation]][:3],
            [row for row in expected[relation] if row not in rows][:3],
        )
        for relation, rows in built.items()
        if rows != expected[relation]
    }


def later_tasks(simulator: Simulator, project: str, rng: random.Random, n: int) -> list[dict]:
    """n tasks like the project's, failed on the days after the latest failure of any project:
    the latest day in the data moves on."""
    latest = max(int(t["task_time"]) for p in simulator.projects() for t in simulator.tasks(p))
    like = rng.sample(simulator.tasks(project), n)
    return [
        {
            **task,
            "task_id": f"later-{rng.getrandbits(64):016x}",
            "task_time": str(latest + rng.randint(1, 2) * DAY_MS + rng.randrange(DAY_MS)),
        }
        for task in like
    ]


def changed_tasks(simulator: Simulator, project: str, rng: random.Random, n: int) -> list[dict]:
    """n of the project's tasks taken off the list and listed again, changed: another error
    code, an earlier failure (the first day of its keys moves back), or another key pair."""
    tasks = simulator.delete_tasks(project, n=n)
    for task in tasks:
        change = rng.choice(("code", "earlier", "keypair"))
        if change == "code":
            task["task_error_code"] = f"KPS.{rng.randint(9000, 9999)}"
        elif change == "earlier":
            task["task_time"] = str(int(task["task_time"]) - rng.randint(1, 40) * DAY_MS)
        else:
            task["keypair_name"] = f"renamed-{rng.randint(0, 3)}"
    return tasks


def run_killed(point: str) -> None:
    """`kps-warehouse run` in a process of its own, configured as this one is (through the
    environment, see `configure`), killed at the crash point `point`."""
    env = {**os.environ, crash_points.ENVIRONMENT_VARIABLE: point}
    killed = subprocess.run([CLI, "run"], capture_output=True, text=True, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert f"kps-warehouse: crash point {point} reached" in killed.stderr


STEPS = (
    "nothing",
    "added",
    "new day",
    "cleared",
    "changed",
    "returned",
    "failed",
    "one project",
    "killed",
)


def one_step(
    simulator: Simulator, rng: random.Random, step: str, cleared: list[tuple[str, dict]]
) -> dict:
    """Changes the API as `step` says, for a random project; returns the extra arguments of the
    run that follows."""
    projects = sorted(simulator.projects())
    project = rng.choice(projects)
    options: dict = {}
    if step == "added":
        simulator.add_tasks(project, rng.randint(1, 20))
    elif step == "new day":
        simulator.add_tasks(project, later_tasks(simulator, project, rng, rng.randint(1, 5)))
    elif step == "cleared":
        cleared += [(project, t) for t in simulator.delete_tasks(project, n=rng.randint(1, 10))]
    elif step == "changed":
        simulator.add_tasks(project, changed_tasks(simulator, project, rng, rng.randint(1, 5)))
    elif step == "returned" and cleared:
        back_to, task = cleared.pop(rng.randrange(len(cleared)))
        simulator.add_tasks(back_to, [task])
    elif step == "failed":  # one project's run fails, the others add tasks
        simulator.add_tasks(project, rng.randint(1, 5))
        options = {"projects": {"cn-north-4": [*projects, UNKNOWN_PROJECT]}}
    elif step == "one project":  # a run limited to one project changes it
        simulator.delete_tasks(project, n=2)
        options = {"projects": {"cn-north-4": [project]}}
    elif step == "killed":  # runs killed at every point in turn: the next one makes up for them
        # these runs build on models already there: a whole build's own point is not on their
        # way (tests/test_reliability.py kills a whole build there)
        points = [point for point in crash_points.POINTS if point != "mid-build"]
        for point in rng.sample(points, len(points)):
            project = rng.choice(projects)
            simulator.add_tasks(project, rng.randint(1, 5))
            cleared += [(project, t) for t in simulator.delete_tasks(project, n=rng.randint(1, 3))]
            run_killed(point)
    return options


@pytest.mark.parametrize("seed", [1, 2])
def test_after_any_sequence_of_runs_every_model_equals_a_full_rebuild(
    simulator: Simulator, configure: Callable, warehouse: Path, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    for _ in range(3):
        simulator.add_project(region="cn-north-4", tasks=rng.randint(50, 150))
    configure()
    assert load.run().exit_code == 0
    cleared: list[tuple[str, dict]] = []
    updated: Counter[str] = Counter()

    # every kind of step once, in a random order, then as many again drawn at random
    steps = rng.sample(STEPS, len(STEPS)) + rng.choices(STEPS, k=EXTRA_STEPS)
    for step in steps:
        result = load.run(**one_step(simulator, rng, step, cleared))

        assert result.exit_code in (0, 3), (step, result.transform_error)
        assert result.transform.failed == [], step
        full = Path(shutil.copy(warehouse, tmp_path / "full.duckdb"))
        runner.transform(full)  # every model rebuilt from the same raw tables
        assert differences(every_model(warehouse), every_model(full)) == {}, step
        updated.update(result.transform.updated)

    # the runs went through the incremental paths (a new day updates the trends whole otherwise)
    assert updated["intermediate.int_tasks__latest"] >= len(STEPS) - 2
    assert updated["intermediate.int_failures__series"] >= len(STEPS) - 2
