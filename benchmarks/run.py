"""`make bench`: is kps-warehouse fast at a thousand projects, and is a scheduled run's cost
its change's, not its history's?

Runs every workload side by side in one go and prints (and writes to benchmarks/results.md)
one table of measurements and one of targets. Each section is a module in workloads/:

A. 1,000 projects x 1,000 tasks, no latency: this project, dlt's declarative `rest_api` source
   (on a subset: it is ~100x slower) and the floor (raw page bytes into DuckDB `read_json`);
   ours and the floor three times each, in turns, and their medians compared.
B. 500 projects x 200 tasks, 50 ms per request: this project (median of 3 runs) against a
   sequential loop, and the simulator's peak of requests in flight against the configured
   concurrency.
C. A repeat run of A's warehouse with nothing changed, a full `transform`, and a run with the
   models.
D. 20 projects x 50,000 tasks: the models and the report on a million tasks.
E. Twice A's projects: how this project's peak memory grows with the tasks.
F. A first run of A with the models, against A's load alone.
G. Runs of F's warehouse in which 1% of the projects changed, against runs with nothing changed.
H. The same changes with four times A's tasks of history, against G.
P. A's first run and its repeat into PostgreSQL (KPS_BENCH_POSTGRES, a server's `postgres`
   database URL; default the local server), beside the same into DuckDB.

Each workload runs in its own subprocess (workers.py), so its peak memory is its own and a crash
is a row in the table, not the end of the benchmark. The simulator runs in yet another process,
so its CPU does not compete for the client's GIL (the machine has 2 cores: one each).

    .venv/bin/python benchmarks/run.py [--scale 0.1] [--only A|B|C|D|E|F|G|H|P]...
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from harness import OVERLAPPED_PHASE, RESULTS_FILE, ROOT, Report
from workers import worker_main
from workloads.ac_first_and_repeat_run import sections_a_and_c
from workloads.b_latency import section_b
from workloads.d_large_projects import section_d
from workloads.e_memory_growth import section_e
from workloads.fgh_scheduled_runs import sections_f_g_h
from workloads.p_postgres import section_p

SECTIONS = ("A", "B", "C", "D", "E", "F", "G", "H", "P")


def render(report: Report) -> str:
    """The measurements, the targets and the phase breakdown as markdown."""
    lines = [
        "# kps-warehouse benchmark",
        "",
        _environment(report.scale),
        "",
        "| | workload | rows | seconds | rows/s | peak MB | client CPU s | ratio | notes |",
        "|---|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for row in sorted(report.rows, key=lambda row: row.section):  # stable: A, B, C in run order
        m = row.measured
        notes = "; ".join(n for n in row.notes if n)
        if m.error:
            notes = f"**failed**: {m.error}" + (f"; {notes}" if notes else "")
        lines.append(
            f"| {row.section} | {m.workload} | {_num(m.rows)} | {_num(m.seconds, '.2f')}"
            f" | {_num(m.rate)} | {_num(m.peak_mb)} | {_num(m.cpu_seconds, '.1f')}"
            f" | {row.ratio} | {notes} |"
        )
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    for target in sorted(report.targets, key=lambda target: target.name[0]):
        result = {True: "PASS", False: "**FAIL**", None: "not measured"}[target.passed]
        lines.append(f"| {target.name} | {target.measured} | {result} |")
    if report.phases:
        names = [
            "read",
            OVERLAPPED_PHASE,
            "dlt extract",
            "dlt normalize",
            "dlt load",
            "models",
            "publish",
        ]
        lines += [
            "",
            "Where this project's time goes (seconds; `read` is HTTP + JSON + record checks for"
            f" every project, before dlt starts; `{OVERLAPPED_PHASE}` is the part of it spent"
            " turning finished projects' pages into hashed rows on disk, while the other reads"
            " go on, so it is not added to the total; `models` only in a run that builds them;"
            " `other` includes closing the load's connection, which writes the file):",
            "",
            "| run | " + " | ".join(names) + " | other | total |",
            "|---|" + "--:|" * (len(names) + 2),
        ]
        totals = {row.measured.workload: row.measured.seconds for row in report.rows}
        for run, phases in sorted(report.phases.items()):
            if not phases:
                continue
            total = totals.get(run.split(": ", 1)[1])
            counted = sum(v for name, v in phases.items() if name != OVERLAPPED_PHASE)
            other = None if total is None else total - counted
            cells = [_num(phases.get(name), ".2f") for name in names]
            lines.append(
                f"| {run} | "
                + " | ".join(cells)
                + f" | {_num(other, '.2f')} | {_num(total, '.2f')} |"
            )
    return "\n".join(lines) + "\n"


def _num(value: float | None, spec: str = ",.0f") -> str:
    return "" if value is None else format(value, spec)


def _environment(scale: float) -> str:
    from importlib.metadata import version

    return (
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime())}; scale {scale:g}; "
        f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, dlt {version('dlt')}, duckdb {version('duckdb')}, "
        f"pyarrow {version('pyarrow')}. Each workload runs in its own process; the simulator in"
        " another. Ratios compare rows/s (A) or wall time (B to H); seconds exclude interpreter"
        " start-up and imports; peak MB is the workload process's maximum resident set."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="workload size factor, e.g. 0.1")
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only these sections (E and F compare with A, H with G)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    sections = set(args.only or SECTIONS)
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # inherited by the simulator processes
    report = Report(args.scale)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kps-bench-") as name:
        tmp = Path(name)
        if sections & {"A", "C"}:
            sections_a_and_c(report, tmp / "a", "A" in sections, "C" in sections)
        if "B" in sections:
            section_b(report, tmp / "b")
        if "D" in sections:
            section_d(report, tmp / "d")
        if "E" in sections:
            section_e(report, tmp / "e")
        if sections & {"F", "G", "H"}:
            sections_f_g_h(report, tmp / "f", *(s in sections for s in ("F", "G", "H")))
        if "P" in sections:
            section_p(report, tmp / "p")
    text = render(report)
    print()
    print(text)
    RESULTS_FILE.write_text(text)
    print(f"written to {RESULTS_FILE.relative_to(ROOT)} ({time.perf_counter() - started:.0f} s)")
    return 0 if all(t.passed for t in report.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
