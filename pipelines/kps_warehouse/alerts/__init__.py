"""Alerts: after a run's models are built, tell the on-call chat what is new, once.

Inside the run's lock, in the writer copy, before it is published: find the events
(`events.py`), record the new ones and a pending delivery per receiver (`state.py`), send within
the time budget (`delivery.py`), record each outcome. The published warehouse therefore never
shows an event without its delivery state, and a killed run leaves in the writer copy, which
the next run continues from, every delivery it had started marked `sending`: the next run
records those `unknown` and never sends them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from kps_warehouse.source.transport import Transport

from . import delivery, events, formats, state
from .config import Receiver, Settings, settings

__all__ = ["Notifier", "Outcome", "Settings", "listing", "preview", "settings"]


@dataclass
class Outcome:
    """What one run's alerts step did, for its summary."""

    found: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    error: str | None = None

    def counts(self) -> dict[str, int]:
        return {
            "found": self.found,
            "sent": self.sent,
            "failed": self.failed,
            "pending": self.pending,
        }


class Notifier:
    """The step a run calls after its models, in the writer copy (see `load.run`)."""

    def __init__(self, config: Settings) -> None:
        self.settings = config
        self.outcome: Outcome | None = None

    def __call__(self, database: Path, result: Any) -> None:
        """Never raises: receivers' failures are counted, and anything else that stops the
        alerts is kept as `outcome.error` for the run to report; its load is published and its
        exit code stays the load's (alerts never harm the load)."""
        projects = [p.project_id for p in result.projects]
        try:
            self.outcome = notify(database, self.settings, result.run_id, projects)
        except duckdb.Error as exc:
            self.outcome = Outcome(error=f"alerts: {type(exc).__name__}: {_first_line(exc)}")
        except Exception as exc:  # noqa: BLE001 - reported, not hidden; only its type, since
            # a message could quote a webhook URL
            self.outcome = Outcome(error=f"alerts failed: {type(exc).__name__}")


def notify(database: Path, config: Settings, run_id: str, projects: list[str]) -> Outcome:
    """The alerts step in the writer copy `database`, in the order the module docstring gives."""
    transport = Transport(False, delivery.READ_SECONDS, pool_size=2)
    with state.connect(database) as con:
        state.create(con)
        state.give_up_interrupted(con)
        found = events.detect(
            con,
            projects=projects,
            failing_runs=config.failing_runs,
            lookback_days=config.lookback_days,
            known=state.known_keys(con),
        )
        new = state.record(con, found, config, run_id, datetime.now(UTC))
        tally = delivery.deliver(con, config, run_id, transport)
        pending = state.pending_count(con, [r.id for r in config.receivers])
    return Outcome(found=new, sent=tally.sent, failed=tally.failed, pending=pending)


def preview(database: Path, config: Settings) -> list[tuple[Receiver, formats.Message]]:
    """The messages the next run would send, from the published warehouse, read-only: the
    pending deliveries and the events not recorded yet. Nothing is sent or marked."""
    if not database.exists():
        return []
    now = datetime.now(UTC)
    with state.connect(database, read_only=True) as con:
        known = state.known_keys(con)
        found = events.detect(
            con,
            projects=_latest_run_projects(con),
            failing_runs=config.failing_runs,
            lookback_days=config.lookback_days,
            known=known,
        )
        new = state.stored([e for e in found if e.key not in known], "(next run)", now)
        planned = []
        for receiver in config.receivers:
            current = [e.key for e in found if e.key in known]
            wanted = [
                e
                for e in [
                    *state.pending(con, receiver.id),
                    *state.undelivered(con, receiver.id, current),
                    *new,
                ]
                if receiver.wants(e["event"], e["severity"]) and not config.muted(e["key"], now)
            ]
            payloads = [formats.payload(e) for e in wanted]
            planned += [(receiver, m) for m in formats.messages(receiver, payloads)]
    return planned


def listing(database: Path, limit: int) -> list[dict[str, Any]]:
    """The recorded events and their deliveries, pending first (see `state.listing`)."""
    if not database.exists():
        return []
    with state.connect(database, read_only=True) as con:
        return state.listing(con, limit)


def _latest_run_projects(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The projects of the latest run: those a run configured, as far as the warehouse knows."""
    if "kps_raw.runs" not in events.relations(con):
        return []
    rows = con.execute(
        "select project_id from kps_raw.runs"
        " where run_id = (select max_by(run_id, started_at) from kps_raw.runs)"
    ).fetchall()
    return [project_id for (project_id,) in rows]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
