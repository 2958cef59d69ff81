"""F, G and H: the whole scheduled run, models and data tests included.

F: a first run of A with the models, against A's load alone. G: runs of F's warehouse in which
1% of the projects changed (a few new failures and clearings each, one on a new day, so the latest
day in the data moves on), against runs in which nothing changed. H: the same changes on a
warehouse holding four times A's tasks of history, of which A's are listed now, against G. The
history is four periods of 120 days, loaded oldest first: in each, every project listed as many
tasks as in A, on its own key pairs and servers, all cleared when the next period began. (Until
2026-12-04 every period's tasks failed in the same 120 days, on new key pairs and servers each
time: four times the present's failures rather than four times its history.)
"""

from __future__ import annotations

from pathlib import Path

from harness import (
    A_PROJECTS,
    A_TASKS,
    RUNS,
    Measured,
    Report,
    Row,
    Target,
    measure,
    median_of,
    ratio,
    simulator,
)

CHANGED_SHARE = 0.01
HISTORY_PERIODS = 4  # H's history: this many periods of A's tasks, the last one the present
MAX_F_VS_LOAD = 2.0
MAX_G_VS_UNCHANGED = 1.5
MAX_H_VS_G = 1.5
MAX_RUN_PEAK_MB = 800.0


def sections_f_g_h(report: Report, tmp: Path, run_f: bool, run_g: bool, run_h: bool) -> None:
    projects = max(1, round(A_PROJECTS * report.scale))
    print(f"F/G/H: {projects * A_TASKS:,} tasks listed", flush=True)
    with simulator(projects, A_TASKS) as sim:
        ids = sim.info.projects
        first = median_of(
            [
                scheduled_run(sim, "ours, first run with the models", ids, tmp / "f" / str(n))
                for n in range(RUNS if run_f else 1)
            ]
        )
        if run_f:
            section_f(report, first)
        if run_g and not first.error:
            warehouse = tmp / "f" / "0"
            unchanged = median_of(
                [scheduled_run(sim, "ours, nothing changed", ids, warehouse) for _ in range(RUNS)]
            )
            changed = changed_runs(sim, "ours, 1% of projects changed", ids, warehouse, seed=0)
            section_g(report, unchanged, changed)
        if run_h:
            history = tmp / "h"
            for periods_ago in reversed(range(HISTORY_PERIODS)):
                sim.turn_over(A_TASKS, periods_ago)
                scheduled_run(sim, "ours, history loaded", ids, history, transform=False)
            built = scheduled_run(sim, "ours, first build at 4x history", ids, history)
            changed = changed_runs(
                sim, "ours, 1% of projects changed, 4x history", ids, history, seed=100
            )
            section_h(report, built, changed)


def scheduled_run(
    sim, workload: str, ids: list[str], workdir: Path, *, transform: bool = True
) -> Measured:
    """`run` into workdir's warehouse, the models and data tests included unless not `transform`."""
    spec = {
        "projects": ids,
        "warehouse": str(workdir / "warehouse" / "kps.duckdb"),
        "transform": transform,
    }
    return measure(sim, workload, "ours", spec, workdir)


def changed_runs(sim, workload: str, ids: list[str], workdir: Path, seed: int) -> Measured:
    """The median of RUNS runs, each after a change to CHANGED_SHARE of the projects."""
    runs = []
    for n in range(RUNS):
        sim.change(CHANGED_SHARE, seed + n)
        runs.append(scheduled_run(sim, workload, ids, workdir))
    return median_of(runs)


def _models_note(run: Measured) -> str:
    phases = run.details.get("phases", {})
    if run.error or "models" not in phases:
        return ""
    return (
        f"models and data tests {phases['models']:.2f} s ({run.details.get('models_updated')}"
        f" updated, {run.details.get('models_kept')} kept)"
    )


def section_f(report: Report, first: Measured) -> None:
    share = None if first.error else ratio(first.seconds, report.a_seconds)
    first.notes.append(_models_note(first))
    report.rows.append(
        Row("F", first, "" if share is None else f"{share:.2f}x A's load", first.notes)
    )
    report.phases[f"F: {first.workload}"] = first.details.get("phases", {})
    report.targets += [
        _within(
            f"F: a first run with the models within {MAX_F_VS_LOAD:g}x of A's load alone",
            share,
            MAX_F_VS_LOAD,
            first.seconds,
            report.a_seconds,
        ),
        _peak_target("F", first),
    ]


def section_g(report: Report, unchanged: Measured, changed: Measured) -> None:
    share = None if unchanged.error or changed.error else ratio(changed.seconds, unchanged.seconds)
    for run in (unchanged, changed):
        run.notes.append(_models_note(run))
        report.phases[f"G: {run.workload}"] = run.details.get("phases", {})
    report.rows += [
        Row("G", unchanged, "baseline", unchanged.notes),
        Row("G", changed, "" if share is None else f"{share:.2f}x nothing changed", changed.notes),
    ]
    report.g_seconds = None if changed.error else changed.seconds
    report.targets += [
        _within(
            f"G: 1% of projects changed within {MAX_G_VS_UNCHANGED:g}x of nothing changed",
            share,
            MAX_G_VS_UNCHANGED,
            changed.seconds,
            unchanged.seconds,
        ),
        _peak_target("G", changed),
    ]


def section_h(report: Report, built: Measured, changed: Measured) -> None:
    share = None if changed.error else ratio(changed.seconds, report.g_seconds)
    built.notes.append(_models_note(built))
    changed.notes.append(_models_note(changed))
    for run in (built, changed):
        report.phases[f"H: {run.workload}"] = run.details.get("phases", {})
    rows = changed.details.get("table_rows")
    report.rows += [
        Row("H", built, "", built.notes),
        Row(
            "H",
            changed,
            "" if share is None else f"{share:.2f}x G",
            [*changed.notes, f"{rows:,} task versions" if rows else ""],
        ),
    ]
    report.targets.append(
        _within(
            f"H: 1% changed at 4x the history within {MAX_H_VS_G:g}x of G",
            share,
            MAX_H_VS_G,
            changed.seconds,
            report.g_seconds,
        )
    )


def _peak_target(section: str, run: Measured) -> Target:
    return Target(
        f"{section}: peak memory < {MAX_RUN_PEAK_MB:g} MB, models included",
        "" if run.peak_mb is None else f"{run.peak_mb:.0f} MB",
        None if run.peak_mb is None or run.error else run.peak_mb < MAX_RUN_PEAK_MB,
    )


def _within(
    name: str, share: float | None, limit: float, seconds: float | None, against: float | None
) -> Target:
    measured = "" if share is None else f"{share:.2f}x ({seconds:.2f} s vs {against:.2f} s)"
    return Target(name, measured, None if share is None else share <= limit)
