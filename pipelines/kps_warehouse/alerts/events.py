"""What is worth telling the on-call team, read from the models and the runs, each with a key
that stays the same however many runs see it.

- `spike:{project}:{dimension}:{key}:{first day}`: a key pair, server or error code in
  `marts.failure_spikes`. Consecutive spike days are one spike, keyed by its first day, so a
  spike that goes on does not notify again.
- `new_error_code:{project}:{code}`: a code the project had never failed with before.
- `project_failing:{project}:{first failed run}`: a configured project's last N runs failed.
- `project_recovered:{project}:{first failed run}`: its next run loaded again.

Only spikes and new codes whose latest day is among the last `lookback_days` days of the data
count, so a first run over months of history, or a project added with its past, tells only
what is happening now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb

# z-scores from this high up (twice the spike threshold) make a spike critical
CRITICAL_Z_SCORE = 6.0

SPIKES_SQL = """
with

spikes as (
    select * from marts.failure_spikes
),

latest_day as (
    select max(day) as day from marts.failure_trend_error_code
),

-- consecutive spike days of one key share an island number (gaps and islands)
numbered as (
    select
        spikes.*,
        spikes.day - cast(
            row_number() over (partition by dimension, project_id, key order by day) as integer
        ) as island
    from spikes
),

islands as (
    select
        dimension,
        project_id,
        key,
        min(day) as first_day,
        max(day) as last_day,
        arg_min(key_label, day) as key_label,
        arg_min(failures, day) as failures,
        arg_min(baseline_mean, day) as baseline_mean,
        arg_min(z_score, day) as z_score
    from numbered
    group by dimension, project_id, key, island
)

select
    islands.dimension,
    islands.project_id,
    islands.key,
    islands.key_label,
    islands.first_day,
    islands.failures,
    islands.baseline_mean,
    islands.z_score
from islands
cross join latest_day
where islands.last_day > latest_day.day - $lookback_days
order by islands.first_day, islands.project_id, islands.dimension, islands.key
"""

NEW_ERROR_CODES_SQL = """
with

codes as (
    select * from marts.failure_trend_error_code
    where failures > 0
),

latest_day as (
    select max(day) as day from codes
),

project_starts as (
    select project_id, min(day) as first_day
    from codes
    group by project_id
),

first_failures as (
    select
        project_id,
        error_code,
        min(day) as first_day,
        arg_min(failures, day) as failures
    from codes
    group by project_id, error_code
)

select
    first_failures.project_id,
    first_failures.error_code,
    first_failures.first_day,
    first_failures.failures
from first_failures
inner join project_starts using (project_id)
cross join latest_day
-- new against the project's own earlier history; its very first day has none
where first_failures.first_day > project_starts.first_day
    and first_failures.first_day > latest_day.day - $lookback_days
order by first_failures.first_day, first_failures.project_id, first_failures.error_code
"""

# Per configured project, the failed runs in a row that end with its latest run (`failing`) or
# with the run before its latest, when the latest loaded (`recovered`).
STREAKS_SQL = """
with

runs as (
    select
        project_id,
        run_id,
        region,
        started_at,
        status,
        error,
        row_number() over (partition by project_id order by started_at desc) as nth_latest
    from kps_raw.runs
    where project_id in (select unnest($projects))
),

latest as (
    select project_id, status = 'ok' as loaded
    from runs
    where nth_latest = 1
),

-- the streak counts back from the latest run (failing) or from the one before (recovered)
starts as (
    select
        project_id,
        loaded,
        case when loaded then 2 else 1 end as start_nth
    from latest
),

-- and ends before the next ok run, or with the project's first run
streak_ends as (
    select
        starts.project_id,
        starts.loaded,
        starts.start_nth,
        coalesce(
            min(runs.nth_latest) filter (
                where runs.status = 'ok' and runs.nth_latest >= starts.start_nth
            ),
            max(runs.nth_latest) + 1
        ) as end_nth
    from starts
    inner join runs using (project_id)
    group by starts.project_id, starts.loaded, starts.start_nth
),

streaks as (
    select
        runs.project_id,
        streak_ends.loaded,
        count(*) as failed_runs,
        arg_min(runs.run_id, runs.started_at) as first_run_id,
        min(runs.started_at) as since,
        arg_max(runs.region, runs.started_at) as region,
        arg_max(runs.error, runs.started_at) as last_error
    from runs
    inner join streak_ends using (project_id)
    where runs.nth_latest >= streak_ends.start_nth
        and runs.nth_latest < streak_ends.end_nth
    group by runs.project_id, streak_ends.loaded
)

select project_id, loaded, failed_runs, first_run_id, since, region, last_error
from streaks
where failed_runs >= $failing_runs
order by project_id
"""


@dataclass(frozen=True)
class Event:
    """One thing to tell, as the `json` format sends it (plus the run that found it)."""

    key: str
    event: str
    severity: str
    project_id: str
    dimension: str | None
    name: str | None
    day: date | None
    failures: int | None
    baseline: float | None
    z_score: float | None
    summary: str


DIMENSION_NAMES = {"keypair": "key pair", "server": "server", "error_code": "error code"}


def detect(
    con: duckdb.DuckDBPyConnection,
    *,
    projects: Sequence[str],
    failing_runs: int,
    lookback_days: int,
    known: set[str],
) -> list[Event]:
    """Every event the warehouse shows now; `known` holds the keys already recorded (recovery
    is only told of a failing that was)."""
    tables = relations(con)
    found: list[Event] = []
    if {"marts.failure_spikes", "marts.failure_trend_error_code"} <= tables:
        found += _spikes(con, lookback_days)
        found += _new_error_codes(con, lookback_days)
    if "kps_raw.runs" in tables and projects:
        found += _streaks(con, projects, failing_runs, known)
    return found


def relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
    return {f"{schema}.{name}" for schema, name in rows}


def _spikes(con: duckdb.DuckDBPyConnection, lookback_days: int) -> list[Event]:
    rows = con.execute(SPIKES_SQL, {"lookback_days": lookback_days}).fetchall()
    events = []
    for dimension, project_id, key, label, day, failures, baseline, z_score in rows:
        events.append(
            Event(
                key=f"spike:{project_id}:{dimension}:{key}:{day.isoformat()}",
                event="spike",
                severity="critical" if z_score >= CRITICAL_Z_SCORE else "warning",
                project_id=project_id,
                dimension=dimension,
                name=label,
                day=day,
                failures=failures,
                baseline=round(baseline, 2),
                z_score=round(z_score, 2),
                summary=(
                    f"Failure spike: {DIMENSION_NAMES.get(dimension, dimension)} {label} in"
                    f" project {project_id}: {failures} failures on {day.isoformat()}, against"
                    f" {baseline:.1f} a day over the days before (z {z_score:.1f})"
                ),
            )
        )
    return events


def _new_error_codes(con: duckdb.DuckDBPyConnection, lookback_days: int) -> list[Event]:
    rows = con.execute(NEW_ERROR_CODES_SQL, {"lookback_days": lookback_days}).fetchall()
    return [
        Event(
            key=f"new_error_code:{project_id}:{code}",
            event="new_error_code",
            severity="warning",
            project_id=project_id,
            dimension="error_code",
            name=code,
            day=day,
            failures=failures,
            baseline=0.0,
            z_score=None,
            summary=(
                f"New error code {code} in project {project_id}: {failures} failures on"
                f" {day.isoformat()}, never seen there before"
            ),
        )
        for project_id, code, day, failures in rows
    ]


def _streaks(
    con: duckdb.DuckDBPyConnection, projects: Sequence[str], failing_runs: int, known: set[str]
) -> list[Event]:
    rows = con.execute(
        STREAKS_SQL, {"projects": list(projects), "failing_runs": failing_runs}
    ).fetchall()
    events = []
    for project_id, loaded, failed_runs, first_run_id, since, region, last_error in rows:
        since_text = since.strftime("%Y-%m-%d %H:%M UTC")
        if not loaded:
            kind, severity = "project_failing", "critical"
            summary = (
                f"Project {project_id} ({region}) failed its last {failed_runs} runs,"
                f" since {since_text}: {_first_line(last_error)}"
            )
        elif f"project_failing:{project_id}:{first_run_id}" in known:
            kind, severity = "project_recovered", "info"
            summary = (
                f"Project {project_id} ({region}) loaded again after {failed_runs}"
                f" failed runs since {since_text}"
            )
        else:
            continue  # its failing was never told, so neither is its end
        events.append(
            Event(
                key=f"{kind}:{project_id}:{first_run_id}",
                event=kind,
                severity=severity,
                project_id=project_id,
                dimension=None,
                name=None,
                day=since.date(),
                failures=failed_runs,
                baseline=None,
                z_score=None,
                summary=summary,
            )
        )
    return events


def _first_line(text: str | None, limit: int = 160) -> str:
    lines = (text or "").strip().splitlines()
    line = lines[0] if lines else "no error recorded"
    return line if len(line) <= limit else line[: limit - 1] + "…"
