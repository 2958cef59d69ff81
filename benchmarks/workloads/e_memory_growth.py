"""E: twice A's tasks, for how this project's peak memory grows with them."""

from __future__ import annotations

from pathlib import Path

from harness import (
    A_PROJECTS,
    A_TASKS,
    Report,
    Row,
    Target,
    measure,
    ratio,
    server_note,
    simulator,
)

E_SCALE = 2  # A's projects times this
# Our reading of "memory stays flat as the number of tasks grows": twice the tasks, at most a
# quarter more memory (the rows themselves double).
MAX_PEAK_GROWTH = 1.25


def section_e(report: Report, tmp: Path) -> None:
    """E: ours at E_SCALE times A's tasks, for how memory grows with them."""
    projects = max(1, round(A_PROJECTS * E_SCALE * report.scale))
    print(f"E: {projects * A_TASKS:,} tasks", flush=True)
    with simulator(projects, A_TASKS) as sim:
        warehouse = tmp / "warehouse" / "kps.duckdb"
        spec = {"projects": sim.info.projects, "warehouse": str(warehouse)}
        more = measure(sim, f"ours, {E_SCALE}x A's tasks", "ours", spec, tmp)
    growth = None if more.error else ratio(more.peak_mb, report.a_peak_mb)
    report.rows.append(
        Row("E", more, "" if growth is None else f"peak {growth:.2f}x A's", [server_note(more)])
    )
    report.phases[f"E: {more.workload}"] = more.details.get("phases", {})
    report.targets.append(
        Target(
            f"E (ours): {E_SCALE}x A's tasks peak at <= {MAX_PEAK_GROWTH:g}x A's memory",
            ""
            if growth is None
            else f"{more.peak_mb:,.0f} MB vs {report.a_peak_mb:,.0f} MB = {growth:.2f}x",
            None if growth is None else growth <= MAX_PEAK_GROWTH,
        )
    )
