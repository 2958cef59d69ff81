"""Turns FailedTasks records as delivered into loadable arrow rows, or into rejects with a reason.

Knows nothing of HTTP or dlt: it takes what a page held and says, record by record, whether it
can be loaded as is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .settings import (
    FAILED_TASKS_SCHEMA,
    MAX_TASK_TIME_MS,
    MIN_TASK_TIME_MS,
    TASK_FIELDS,
)

_TEXT_FIELDS = tuple(f for f in TASK_FIELDS if f not in ("task_id", "task_time"))
_KNOWN = frozenset(TASK_FIELDS)
_HASHED_FIELDS = ("task_id", "task_time", *_TEXT_FIELDS, "extra_fields")


@dataclass(frozen=True)
class Reject:
    """A record that cannot be loaded as is, kept with the reason and the record as JSON text."""

    reason: str
    payload: str


def to_json(value: Any) -> str:
    """The record as JSON text, exactly as parsed (non-ASCII kept readable)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def parse_task_time(value: Any) -> tuple[str, int] | None:
    """`task_time` as delivered (a string of epoch ms, or a JSON number) → (text, epoch ms)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        millis = value
    elif isinstance(value, float) and value.is_integer():
        millis = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        millis = int(value.strip())
    else:
        return None
    if not MIN_TASK_TIME_MS <= millis < MAX_TASK_TIME_MS:
        return None
    return str(millis), millis


def check_record(record: Any) -> str | None:
    """Why this record cannot be loaded as is, or None when it can."""
    if not isinstance(record, Mapping):
        return f"record is a JSON {type(record).__name__}, not an object"
    task_id = record.get("task_id")
    if task_id is None:
        return "task_id is missing"
    if not isinstance(task_id, str) or not task_id.strip():
        return f"task_id {to_json(task_id)[:80]} is not a non-empty string"
    if "task_time" not in record or record["task_time"] is None:
        return "task_time is missing"
    if parse_task_time(record["task_time"]) is None:
        return f"task_time {to_json(record['task_time'])[:80]} is not epoch milliseconds"
    for field in _TEXT_FIELDS:
        value = record.get(field)
        if value is not None and not isinstance(value, str):
            return f"{field} is a JSON {type(value).__name__}, expected a string or null"
    return None


class TaskBatch:
    """Loadable rows of one project, column by column, plus the records that were rejected."""

    def __init__(self, project_id: str, region: str, run_id: str) -> None:
        self.project_id = project_id
        self.region = region
        self.run_id = run_id
        self.rejects: list[Reject] = []
        self._rows: dict[str, dict[str, Any]] = {}

    def add(self, records: Iterable[Any]) -> None:
        """Adds one page's records; a task id read again replaces the earlier read."""
        for record in records:
            reason = check_record(record)
            if reason is not None:
                self.rejects.append(Reject(reason, to_json(record)))
                continue
            self._rows[record["task_id"]] = record

    @property
    def task_ids(self) -> frozenset[str]:
        return frozenset(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def to_arrow(self) -> pa.Table:
        """The rows as a table of FAILED_TASKS_SCHEMA, `failed_at` converted from epoch ms."""
        records = list(self._rows.values())
        columns: dict[str, list[Any]] = {f: [r.get(f) for r in records] for f in _TEXT_FIELDS}
        columns["task_id"] = [r["task_id"] for r in records]
        times = [parse_task_time(r["task_time"]) for r in records]
        columns["task_time"] = [t[0] for t in times]  # type: ignore[index]
        columns["extra_fields"] = [extra_fields(r) for r in records]
        columns["row_hash"] = [
            row_hash(self.project_id, self.region, values)
            for values in zip(*(columns[f] for f in _HASHED_FIELDS), strict=True)
        ]
        n = len(records)
        columns["project_id"] = [self.project_id] * n
        columns["region"] = [self.region] * n
        columns["run_id"] = [self.run_id] * n
        arrays = {name: pa.array(values, pa.string()) for name, values in columns.items()}
        # Epoch ms read as a ms timestamp, then widened to DuckDB's native microseconds.
        millis = pa.array([t[1] for t in times], pa.int64())  # type: ignore[index]
        failed_at = millis.cast(pa.timestamp("ms", tz="UTC"))
        arrays["failed_at"] = failed_at.cast(pa.timestamp("us", tz="UTC"))
        return pa.table([arrays[name] for name in FAILED_TASKS_SCHEMA.names], FAILED_TASKS_SCHEMA)


def extra_fields(record: Mapping[str, Any]) -> str | None:
    """Fields the API added beyond the documented ones, as JSON text; None when there are none."""
    if len(record) <= len(TASK_FIELDS) and record.keys() <= _KNOWN:
        return None
    extra = {k: v for k, v in record.items() if k not in _KNOWN}
    return to_json(extra) if extra else None


def row_hash(project_id: str, region: str, values: Iterable[str | None]) -> str:
    """The identity of one version of a task: any change in what the API says makes a new one."""
    # Length-prefixed, so no text (control characters included) can fake a field boundary.
    text = "".join("-" if v is None else f"{len(v)}:{v}" for v in (project_id, region, *values))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
