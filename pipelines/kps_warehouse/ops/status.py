"""What `kps-warehouse status` reports: the last runs per project and the warehouse's freshness."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

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
    warehouse: Path
    projects: list[ProjectStatus]

    @property
    def freshest_at(self) -> datetime | None:
        """When the newest successful load of any project started."""
        successes = [p.last_success_at for p in self.projects if p.last_success_at]
        return max(successes) if successes else None

    def age_seconds(self, now: datetime | None = None) -> float:
        if self.freshest_at is None:
            return float("inf")
        return ((now or datetime.now(UTC)) - self.freshest_at).total_seconds()

    def lines(self) -> list[tuple[str, dict[str, Any]]]:
        """Lines for a person, each with the fields a scheduler reads."""
        fresh = self.freshest_at
        age = f"{self.age_seconds() / 60:.0f} min ago" if fresh else "never"
        lines = [
            (
                f"warehouse {self.warehouse}: last successful load {age}",
                {"warehouse": str(self.warehouse), "freshest_at": fresh},
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
        return lines


def read(warehouse: Path) -> Status:
    """Reads kps_raw.runs from the published warehouse, read-only; none yet is an empty status."""
    if not warehouse.exists():
        return Status(warehouse, [])
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        rows = con.execute(LAST_RUNS_SQL).fetchall()
    return Status(warehouse, [ProjectStatus(*row) for row in rows])
