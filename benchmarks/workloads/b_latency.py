"""B: many one-page projects behind 50 ms of latency; concurrency is what pays."""

from __future__ import annotations

from pathlib import Path

from harness import (
    OVERLAPPED_PHASE,
    Report,
    Row,
    Target,
    configured_concurrency,
    measure,
    median_of_runs,
    ratio,
    simulator,
    times,
    worker_env,
)

B_PROJECTS, B_TASKS, B_LATENCY_MS = 500, 200, 50.0
MIN_SPEEDUP_VS_SEQUENTIAL = 10.0


def section_b(report: Report, tmp: Path) -> None:
    """B: many one-page projects behind 50 ms of latency; concurrency is what pays."""
    projects = max(1, round(B_PROJECTS * report.scale))
    concurrency = configured_concurrency()
    print(f"B: {projects} projects x {B_TASKS} tasks, {B_LATENCY_MS:g} ms latency", flush=True)
    with simulator(projects, B_TASKS, B_LATENCY_MS) as sim:
        ids = sim.info.projects
        sequential = measure(sim, "sequential requests", "sequential", {"projects": ids}, tmp)
        ours = median_of_runs(sim, f"ours, concurrency {concurrency}", ids, tmp / "b_ours")
        # Not a target: shows how the speed-up follows the setting, and that the cap holds.
        doubled = concurrency * 2
        more = median_of_runs(
            sim,
            f"ours, concurrency {doubled}",
            ids,
            tmp / "b_more",
            worker_env({"SOURCES__KPS__CONCURRENCY": str(doubled)}),
        )
        # Not a target either: the same job, paged one request at a time by our own client, so
        # that both sides pay the same fixed costs (the baseline above loads nothing).
        single = measure(
            sim,
            "ours, concurrency 1",
            "ours",
            {"projects": ids, "warehouse": str(tmp / "b_single" / "warehouse" / "kps.duckdb")},
            tmp / "b_single",
            worker_env({"SOURCES__KPS__CONCURRENCY": "1"}),
        )
    for run in (ours, more):
        report.phases[f"B: {run.workload}"] = run.details.get("phases", {})
    speedup = ratio(sequential.seconds, ours.seconds)
    read = ours.details.get("phases", {}).get("read")
    for run, cap in ((ours, concurrency), (more, doubled)):
        peak = run.details.get("peak_concurrency")
        run.notes.append(f"peak concurrency {peak} of {cap}")
        phases = run.details.get("phases", {})
        if not run.error and phases.get("read"):
            hashing = phases.get(OVERLAPPED_PHASE, 0.0)
            run.notes.append(f"read {phases['read']:.2f} s, of which hashing {hashing:.2f} s")
    report.rows += [
        Row("B", ours, "" if speedup is None else f"{speedup:.1f}x sequential", ours.notes),
        Row("B", more, times(ratio(sequential.seconds, more.seconds), "sequential"), more.notes),
        Row("B", sequential, "baseline", ["one request at a time, JSON parsed, nothing loaded"]),
        Row(
            "B",
            single,
            times(ratio(single.seconds, ours.seconds), "slower than ours"),
            ["one request at a time, loaded as ours are; not a target"],
        ),
    ]
    peak = ours.details.get("peak_concurrency")
    read_speedup = ratio(sequential.seconds, read)
    report.targets += [
        Target(
            f"B: ours >= {MIN_SPEEDUP_VS_SEQUENTIAL:g}x faster than sequential",
            times(speedup)
            + ("" if read_speedup is None else f" (the read alone {read_speedup:.1f}x)"),
            None if speedup is None else speedup >= MIN_SPEEDUP_VS_SEQUENTIAL,
        ),
        Target(
            f"B: peak concurrency <= configured ({concurrency})",
            f"{peak} (at {doubled}: {more.details.get('peak_concurrency')})",
            None if peak is None or ours.error else peak <= concurrency,
        ),
    ]
