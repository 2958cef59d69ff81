"""What `kps-warehouse status` reports: the last runs per configured project and the
warehouse's freshness. Projects no longer configured keep their history but leave the view."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from kps_warehouse.transform.postgres import to_postgres

LAST_RUNS_SQL = """
with runs as (
    select
        *,
        row_number() over (partition by project_id order by started_at desc) as nth_latest,
    from kps_raw.runs
),

per_project as (
    select
        project_id,
        max(started_at) filter (where status = 'ok') as last_success_at,
        -- failures since the last success: the latest runs, newest first, until an ok one
        coalesce(min(nth_latest) filter (where status = 'ok'), count(*) + 1) - 1
            as failures_in_a_row,
    from runs
    group by project_id
)

select
    runs.project_id,
    runs.region,
    runs.started_at as last_run_at,
    runs.status as last_status,
    per_project.last_success_at,
    per_project.failures_in_a_row,
    runs.error as last_error,
from runs
join per_project using (project_id)
where runs.nth_latest = 1
order by runs.project_id
"""


@dataclass
class ProjectStatus:
    project_id: str
    region: str
    last_run_at: datetime
    last_status: str
    last_success_at: datetime | None
    failures_in_a_row: int
    last_error: str | None


@dataclass
class Status:
    warehouse: Path | str  # the DuckDB file, or "postgres host:port/database"
    projects: list[ProjectStatus]
    # What the warehouse holds when it holds no runs: "missing", "empty" or "no models".
    found: str | None = None
    # Configured projects that no run has read yet, and projects with runs not configured now.
    never_run: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)

    @property
    def freshest_at(self) -> datetime | None:
        """When the newest successful load of any project started."""
        successes = [p.last_success_at for p in self.projects if p.last_success_at]
        return max(successes) if successes else None

    def age_seconds(self, now: datetime | None = None) -> float:
        if self.freshest_at is None:
            return float("inf")
        return ((now or datetime.now(UTC)) - self.freshest_at).total_seconds()

    def failing(self, runs: int) -> list[ProjectStatus]:
        """The projects whose last `runs` runs (at least) all failed."""
        return [p for p in self.projects if p.failures_in_a_row >= runs]

    def lines(self) -> list[tuple[str, dict[str, Any]]]:
        """Lines for a person, each with the fields a scheduler reads."""
        fresh = self.freshest_at
        age = f"{self.age_seconds() / 60:.0f} min ago" if fresh else "never"
        found = {
            "missing": ": none yet (`kps-warehouse run` builds it, `make demo` a simulated one)",
            "empty": ": holds no run yet (`kps-warehouse run` loads it)",
            "no models": "; its models are not built (`kps-warehouse transform` builds them)",
        }.get(self.found or "", "")
        lines = [
            (
                f"warehouse {self.warehouse}: last successful load {age}{found}",
                {"warehouse": str(self.warehouse), "freshest_at": fresh, "found": self.found},
            )
        ]
        for p in self.projects:
            success = (
                p.last_success_at.isoformat(timespec="seconds") if p.last_success_at else "never"
            )
            line = (
                f"{p.last_status:6} {p.region:15} {p.project_id}  last run"
                f" {p.last_run_at.isoformat(timespec='seconds')}, last success {success}"
            )
            if p.failures_in_a_row:
                line += f", {p.failures_in_a_row} failed in a row: {p.last_error}"
            lines.append((line, asdict(p)))
        for project_id in self.never_run:
            line = f"{'-':6} {'':15} {project_id}  configured, not run yet"
            lines.append((line, {"project_id": project_id, "last_status": None}))
        if self.retired:
            lines.append(
                (
                    f"retired (no longer configured; history kept): {', '.join(self.retired)}",
                    {"retired": self.retired},
                )
            )
        return lines


def read(warehouse: Path, configured: Collection[str] | None = None) -> Status:
    """Reads kps_raw.runs from the published warehouse, read-only, and keeps the `configured`
    projects (all when None). A missing, empty or half-built warehouse says what it holds."""
    if not warehouse.exists():
        return Status(warehouse, [], "missing", sorted(configured or ()))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        tables = {
            name
            for (name,) in con.execute(
                "select table_schema || '.' || table_name from information_schema.tables"
            ).fetchall()
        }
        if "kps_raw.runs" not in tables:
            return Status(warehouse, [], "empty", sorted(configured or ()))
        rows = [ProjectStatus(*row) for row in con.execute(LAST_RUNS_SQL).fetchall()]
    return _status(warehouse, rows, tables, configured)


def read_postgres(session: Any, location: str, configured: Collection[str] | None = None) -> Status:
    """The same from the PostgreSQL database `session` is open on, named `location`."""
    with session.cursor() as cursor:
        cursor.execute("set timezone = 'UTC'")
        cursor.execute("select table_schema || '.' || table_name from information_schema.tables")
        tables = {name for (name,) in cursor.fetchall()}
        if "kps_raw.runs" not in tables:
            return Status(location, [], "empty", sorted(configured or ()))
        cursor.execute(to_postgres(LAST_RUNS_SQL))
        rows = [ProjectStatus(*row) for row in cursor.fetchall()]
    return _status(location, rows, tables, configured)


def _status(
    warehouse: Path | str,
    rows: list[ProjectStatus],
    tables: set[str],
    configured: Collection[str] | None,
) -> Status:
    found = None if "marts.fct_failed_tasks" in tables else "no models"
    if configured is None:
        return Status(warehouse, rows, found)
    ran = {p.project_id for p in rows}
    return Status(
        warehouse,
        [p for p in rows if p.project_id in configured],
        found,
        never_run=sorted(set(configured) - ran),
        retired=sorted(ran - set(configured)),
    )
