"""What `kps-warehouse status` reports: the last runs per project and the warehouse's freshness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from .kps.client import ConfigError


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
    freshest_at: datetime | None

    def lines(self) -> list[str]:
        now = datetime.now(UTC)
        age = (
            f"{(now - self.freshest_at).total_seconds() / 60:.0f} min ago"
            if self.freshest_at
            else "never"
        )
        out = [f"warehouse {self.warehouse}: last successful load {age}"]
        for p in self.projects:
            success = (
                p.last_success_at.isoformat(timespec="seconds") if p.last_success_at else "never"
            )
            line = (
                f"{p.last_status:6} {p.region:16} {p.project_id}  last run "
                f"{p.last_run_at.isoformat(timespec='seconds')}, last success {success}"
            )
            if p.failures_in_a_row:
                line += f", {p.failures_in_a_row} failures in a row: {p.last_error}"
            out.append(line)
        return out


def read(warehouse: Path) -> Status:
    """Reads kps_raw.runs read-only; a warehouse that was never loaded is a configuration error."""
    if not warehouse.exists():
        raise ConfigError(f"no warehouse at {warehouse}: run `kps-warehouse run` first")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        rows = con.execute(
            """
            with runs as (
                select *, row_number() over (partition by project_id order by started_at desc) as n
                from kps_raw.runs
            ),
            streaks as (
                select project_id, min(n) filter (where status = 'ok') as first_ok
                from runs group by project_id
            )
            select
                runs.project_id,
                runs.region,
                runs.started_at,
                runs.status,
                (select max(r.started_at) from runs r
                 where r.project_id = runs.project_id and r.status = 'ok'),
                coalesce(streaks.first_ok, (select count(*) + 1 from runs r
                 where r.project_id = runs.project_id)) - 1,
                runs.error
            from runs join streaks using (project_id)
            where runs.n = 1
            order by runs.project_id
            """
        ).fetchall()
    projects = [ProjectStatus(*row) for row in rows]
    successes = [p.last_success_at for p in projects if p.last_success_at]
    return Status(warehouse, projects, max(successes) if successes else None)
