"""What every benchmark workload shares: the simulator in its own process, a workload run in a
worker process and measured, and the rows and targets of the report."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kps_warehouse.source.settings import DEFAULT_CONCURRENCY

ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = Path(__file__).resolve().parent / "results.md"
# The entry point; a workload's worker process runs it with --worker.
RUN_SCRIPT = Path(__file__).resolve().parent / "run.py"

SEED = 2026
NOW_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z: the same data on every run
REGION = "cn-north-4"
PAGE_SIZE = 1000  # the API's maximum, and this project's default
DAY_MS = 86_400_000
# The simulator's tasks fail within 120 days; H's history is made of periods this long.
HISTORY_PERIOD_MS = 120 * DAY_MS

# Workload A, which C, E, F, G and H start from: one full page per project, so every pass also
# asks for an empty one.
A_PROJECTS, A_TASKS = 1000, 1000
# Runs of each timed workload but the slow baselines; medians are reported. A run of a few
# seconds on this shared machine varies by a tenth or more from one to the next.
RUNS = 3

# A phase that runs inside `read`, in the main thread while the read threads go on.
OVERLAPPED_PHASE = "of which hash + spill"
WORKER_TIMEOUT_SECONDS = 3600.0
# Settings a developer may have exported that would change the workloads; concurrency stays,
# because it is the configuration section B checks against.
FOREIGN_SETTINGS = ("SOURCES__KPS__", "DESTINATION__", "KPS_WAREHOUSE__", "NORMALIZE__", "LOAD__")
KEPT_SETTINGS = ("SOURCES__KPS__CONCURRENCY",)


# ---------------------------------------------------------------------------------------------
# The simulator, in its own process


@dataclass(frozen=True)
class SimulatorInfo:
    """What a workload needs to reach the simulator."""

    port: int
    token: str
    projects: list[str]


def serve_simulator(conn: Connection, projects: int, tasks: int, latency_ms: float) -> None:
    """Child process: a seeded simulator on a free port, answering commands from the pipe."""
    from kps_simulator import Simulator

    sim = Simulator(seed=SEED, now_ms=NOW_MS)
    ids = [sim.add_project(region=REGION, tasks=tasks) for _ in range(projects)]
    sim.configure(latency_ms=latency_ms)
    sim.start()
    conn.send(SimulatorInfo(sim.port, sim.token, ids))
    cpu_at_reset = time.process_time()
    while True:
        command = conn.recv()
        if command == "reset":
            sim.reset_counters()
            cpu_at_reset = time.process_time()
            conn.send(None)
        elif isinstance(command, tuple) and command[0] == "change":
            change_projects(sim, ids, *command[1:])
            conn.send(None)
        elif isinstance(command, tuple) and command[0] == "turnover":
            turn_over(sim, ids, *command[1:])
            conn.send(None)
        elif command == "stats":
            conn.send(
                {
                    "peak_concurrency": sim.peak_concurrency,
                    "requests": len(sim.requests),
                    "cpu_seconds": time.process_time() - cpu_at_reset,
                }
            )
        else:
            break
    sim.stop()


def change_projects(sim: Any, ids: list[str], share: float, seed: int) -> None:
    """A scheduled run's worth of change: in `share` of the projects, a few new failures and a
    few cleared; one of those projects also fails on the day after the latest, so the latest day
    in the data moves on, as it does once a day."""
    rng = random.Random(seed)
    changed = rng.sample(ids, max(1, round(share * len(ids))))
    latest = max(int(task["task_time"]) for project_id in ids for task in sim.tasks(project_id))
    for number, project_id in enumerate(changed):
        sim.add_tasks(project_id, rng.randint(1, 5))
        sim.delete_tasks(project_id, n=rng.randint(1, 3))
        if number == 0:
            [task] = rng.sample(sim.tasks(project_id), 1)
            later = latest + DAY_MS
            sim.add_tasks(
                project_id, [{**task, "task_id": f"later-{seed}", "task_time": str(later)}]
            )


def turn_over(sim: Any, ids: list[str], tasks: int, periods_ago: int) -> None:
    """Every project's listed tasks cleared and as many listed that failed `periods_ago` periods
    of 120 days before NOW_MS (0: the present), on the project's own key pairs and servers: the
    history grows by the tasks listed, and what the API lists stays as large."""
    for project_id in ids:
        sim.delete_tasks(project_id, n=tasks)
        sim.add_tasks(
            project_id,
            sim.draw_tasks(project_id, tasks, now_ms=NOW_MS - periods_ago * HISTORY_PERIOD_MS),
        )


class SimulatorProcess:
    """The parent's handle on a simulator process: start, reset counters, read them, stop."""

    def __init__(self, projects: int, tasks: int, latency_ms: float = 0.0) -> None:
        # spawn, not fork: the child starts clean, whatever the parent holds.
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=serve_simulator,
            args=(child, projects, tasks, latency_ms),
            name="kps-simulator",
            daemon=True,
        )
        self._process.start()
        child.close()
        # Generating a million tasks takes the simulator about half a minute.
        if not self._conn.poll(600):
            self.close()
            raise RuntimeError("the simulator did not start within 10 minutes")
        self.info: SimulatorInfo = self._conn.recv()

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def change(self, share: float, seed: int) -> None:
        self._conn.send(("change", share, seed))
        self._conn.recv()

    def turn_over(self, tasks: int, periods_ago: int) -> None:
        self._conn.send(("turnover", tasks, periods_ago))
        self._conn.recv()

    def stats(self) -> dict[str, Any]:
        self._conn.send("stats")
        return self._conn.recv()

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):  # the child is gone already; join reaps it
                self._conn.send("stop")
            self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)


@contextmanager
def simulator(projects: int, tasks: int, latency_ms: float = 0.0) -> Iterator[SimulatorProcess]:
    started = time.perf_counter()
    process = SimulatorProcess(projects, tasks, latency_ms)
    print(
        f"  simulator: {projects} projects x {tasks} tasks, {latency_ms:g} ms latency,"
        f" ready in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    try:
        yield process
    finally:
        process.close()


# ---------------------------------------------------------------------------------------------
# Running one workload in a subprocess


@dataclass
class Measured:
    """One workload's outcome, as the parent saw it."""

    workload: str
    rows: int | None = None
    seconds: float | None = None
    peak_mb: float | None = None
    cpu_seconds: float | None = None  # the client's user + system time, whole process
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    throughput: bool = True  # False where rows/s means nothing (the models' build)

    @property
    def rate(self) -> float | None:
        if not self.throughput or self.error or not self.rows or not self.seconds:
            return None
        return self.rows / self.seconds


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus settings that would change the workload, telemetry off."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in KEPT_SETTINGS or not key.startswith(FOREIGN_SETTINGS)
    }
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env.update(extra or {})
    return env


def run_worker(
    workload: str,
    kind: str,
    spec: dict[str, Any],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Measured:
    """Runs `kind` in a fresh interpreter in `workdir` and measures its peak memory (wait4)."""
    workdir.mkdir(parents=True, exist_ok=True)
    slug = workload.replace(" ", "_").replace(",", "").replace("/", "_")
    spec_file = workdir / f"{slug}.spec.json"
    out_file = workdir / f"{slug}.out.json"
    log_file = workdir / f"{slug}.log"
    spec_file.write_text(json.dumps({**spec, "kind": kind, "out": str(out_file)}))
    print(f"  {workload} ...", end="", flush=True)
    started = time.perf_counter()
    with log_file.open("wb") as log:
        # The working directory is empty: no .dlt/ of the repository or the caller is read.
        process = subprocess.Popen(
            [sys.executable, str(RUN_SCRIPT), "--worker", str(spec_file)],
            cwd=workdir,
            env=env or worker_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        status, usage = _wait(process, WORKER_TIMEOUT_SECONDS)
    measured = Measured(workload)
    # ru_maxrss is in KiB on Linux; wait4 gives this child's own peak, not the benchmark's.
    measured.peak_mb = usage.ru_maxrss / 1024 if usage else None
    measured.cpu_seconds = usage.ru_utime + usage.ru_stime if usage else None
    result = json.loads(out_file.read_text()) if out_file.exists() else {}
    if status is None:
        measured.error = f"timed out after {WORKER_TIMEOUT_SECONDS:g} s"
    elif result.get("error"):
        measured.error = result["error"]
    elif status != 0 or not result:
        measured.error = f"exit status {status}: {_last_line(log_file)}"
    measured.rows = result.get("rows")
    measured.seconds = result.get("seconds")
    measured.details = result.get("details", {})
    took = time.perf_counter() - started
    print(f" {measured.error or _short(measured)} ({took:.1f} s with start-up)", flush=True)
    return measured


def _wait(process: subprocess.Popen[bytes], timeout: float) -> tuple[int | None, Any]:
    """(exit status, or None on timeout; rusage) of the worker. wait4 instead of Popen.wait,
    because it also returns that one child's peak memory; a worker past `timeout` is killed."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = -9
            return None, usage
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return process.returncode, usage


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _short(measured: Measured) -> str:
    rate = f", {measured.rate:,.0f} rows/s" if measured.rate else ""
    rows = f"{measured.rows:,} rows in " if measured.rows is not None else ""
    return f"{rows}{measured.seconds:.2f} s{rate}, {measured.peak_mb:.0f} MB"


# ---------------------------------------------------------------------------------------------
# The sections, run from the parent


@dataclass
class Row:
    """One line of the measurements table."""

    section: str
    measured: Measured
    ratio: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Target:
    """One target of the issue, with what was measured and whether it was met."""

    name: str
    measured: str
    passed: bool | None  # None: not measured (a workload failed or was not run)


@dataclass
class Report:
    scale: float
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    a_peak_mb: float | None = None  # A's peak, which E compares against
    a_seconds: float | None = None  # A's load alone, which F compares against
    g_seconds: float | None = None  # G, which H compares against


def configured_concurrency() -> int:
    """What the kps source will use: SOURCES__KPS__CONCURRENCY, else its default."""
    return int(os.environ.get("SOURCES__KPS__CONCURRENCY", DEFAULT_CONCURRENCY))


def measure(
    sim: SimulatorProcess,
    workload: str,
    kind: str,
    spec: dict[str, Any],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Measured:
    """One workload against `sim`, with the simulator's counters for just that workload."""
    sim.reset()
    info = sim.info
    spec = {"port": info.port, "token": info.token, **spec}
    measured = run_worker(workload, kind, spec, workdir, env)
    stats = sim.stats()
    measured.details["peak_concurrency"] = stats["peak_concurrency"]
    measured.details["requests"] = stats["requests"]
    measured.details["server_cpu_seconds"] = stats["cpu_seconds"]
    return measured


def median_of_runs(
    sim: SimulatorProcess,
    workload: str,
    projects: list[str],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Measured:
    """The median of RUNS first runs, each into a new warehouse: a run of 3 s on this shared
    machine varies by a tenth or more, the sequential baseline's 26 s by well under that."""
    runs = []
    for attempt in range(RUNS):
        warehouse = workdir / str(attempt) / "warehouse" / "kps.duckdb"
        spec = {"projects": projects, "warehouse": str(warehouse)}
        runs.append(measure(sim, workload, "ours", spec, workdir / str(attempt), env))
    return median_of(runs)


def median_of(runs: list[Measured]) -> Measured:
    """The run of median time, or the first that failed. Its notes list every run's time; its
    peak memory and peak concurrency are the highest any run reached, as targets cap them."""
    if any(run.error for run in runs):
        return next(run for run in runs if run.error)
    if len(runs) == 1:
        return runs[0]
    runs = sorted(runs, key=lambda run: run.seconds or 0.0)
    median = runs[len(runs) // 2]
    median.notes.append(
        f"median of {len(runs)} runs: " + ", ".join(f"{run.seconds:.2f}" for run in runs) + " s"
    )
    median.peak_mb = max(run.peak_mb or 0.0 for run in runs)
    if all("peak_concurrency" in run.details for run in runs):  # not for the models alone
        median.details["peak_concurrency"] = max(run.details["peak_concurrency"] for run in runs)
    return median


def server_note(measured: Measured) -> str:
    cpu = measured.details.get("server_cpu_seconds")
    requests = measured.details.get("requests")
    return f"{requests} requests, simulator CPU {cpu:.1f} s" if cpu is not None else ""


def phase_note(measured: Measured) -> str:
    phases = measured.details.get("phases") or {}
    return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def times(value: float | None, what: str = "") -> str:
    return "" if value is None else f"{value:.1f}x {what}".strip()
