"""Turns FailedTasks records as delivered into loadable arrow rows, or into rejects with a reason.

Knows nothing of HTTP or dlt: it takes what a page held and says, record by record, whether it
can be loaded as is.
"""

from __future__ import annotations

import ctypes
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .settings import (
    FAILED_TASKS_SCHEMA,
    MAX_TASK_TIME_MS,
    MIN_TASK_TIME_MS,
    PAGE_TASKS_SCHEMA,
    TASK_FIELDS,
    TASKS_SCHEMA,
)

_TEXT_FIELDS = tuple(f for f in TASK_FIELDS if f not in ("task_id", "task_time"))
_KNOWN = frozenset(TASK_FIELDS)
# One in-memory DuckDB as a compute engine; each call takes its own cursor, which is
# thread-safe and far cheaper than a new connection.
_DUCKDB = duckdb.connect()
_PAGE_SCHEMA = pa.schema(
    [
        ("total", pa.int64()),
        ("tasks", pa.list_(pa.struct([(f, pa.string()) for f in TASK_FIELDS]))),
    ]
)
_HASHED_FIELDS = ("task_id", "task_time", *_TEXT_FIELDS, "extra_fields")
# Pages are parsed in many threads at once, and arrow's default allocator (mimalloc) spends
# markedly more CPU doing that than the system's (benchmarks/HISTORY.md).
_PARSE_MEMORY = pa.system_memory_pool()
# glibc's, to hand freed memory back (see `release_memory`); None where the C library has none.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


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
    if type(value) is str and value.isdigit() and value.isascii():  # the usual case, first
        millis = int(value)
        return (value, millis) if MIN_TASK_TIME_MS <= millis < MAX_TASK_TIME_MS else None
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
    if not isinstance(record, dict):
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
        if value is not None and type(value) is not str:
            return f"{field} is a JSON {type(value).__name__}, expected a string or null"
    return None


@dataclass(frozen=True)
class PageTasks:
    """What one page listed: its loadable tasks, its rejects, and every task id it named."""

    tasks: pa.Table  # PAGE_TASKS_SCHEMA, in page order
    rejects: list[Reject]
    ids: list[str]  # the string task ids of every record, loadable or not
    size: int  # records listed, good and bad


def read_page_fast(body: bytes) -> tuple[Any, PageTasks] | None:
    """(total, tasks) of a plain page, parsed by arrow without a Python object per record.

    A page is plain when it is one JSON object whose tasks are objects with only the documented
    fields, each a string or null, and every record passes `check_record`. Anything else gives
    None, and the caller takes the careful path (`read_page`), which knows every reason.
    """
    try:
        parsed = pa_json.read_json(
            # arrow's own reader of the bytes: a Python file object would take the GIL to be read
            pa.BufferReader(body),
            # One block holds the whole body, so a page never straddles two.
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(body) + 1),
            memory_pool=_PARSE_MEMORY,
            parse_options=pa_json.ParseOptions(
                explicit_schema=_PAGE_SCHEMA,
                unexpected_field_behavior="error",
                newlines_in_values=True,
            ),
        )
        # arrow's JSON reader copies string bytes as they come; one byte that is not UTF-8
        # would fail the load itself, in DuckDB, for every project
        parsed.validate(full=True)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if parsed.num_rows != 1:
        return None
    listed = parsed.column("tasks").chunk(0)
    if listed.null_count:
        return None
    records = listed.flatten()
    if records.null_count:
        return None
    tasks = pa.Table.from_struct_array(records)
    if tasks["task_id"].null_count:
        return None
    ids = tasks["task_id"].to_pylist()
    if not _plainly_loadable(tasks, ids):
        return None
    tasks = tasks.append_column("extra_fields", pa.nulls(len(tasks), pa.string()))
    return parsed.column("total")[0].as_py(), PageTasks(tasks, [], ids, len(tasks))


def _plainly_loadable(tasks: pa.Table, ids: list[str]) -> bool:
    """Whether `check_record` would pass every row; only ever errs towards False.

    The schema already made every field a string or null; this checks what it cannot, in few
    arrow calls and no regular expression: every call holds the GIL the read threads contend
    for, and a regular expression costs more than the parse it guards.
    """
    task_time = tasks["task_time"]
    if len(tasks) == 0:
        return True
    if task_time.null_count:
        return False
    # str.strip, as check_record judges a blank id: arrow's whitespace is not Python's.
    if not all(task_id.strip() for task_id in ids):
        return False
    if not pc.all(pc.ascii_is_decimal(task_time)).as_py():  # digits only, none empty
        return False
    try:
        millis = pc.cast(task_time, pa.int64())
    except pa.ArrowInvalid:  # more digits than 64 bits hold
        return False
    low, high = (bound.as_py() for bound in pc.min_max(millis).values())
    return low >= MIN_TASK_TIME_MS and high < MAX_TASK_TIME_MS


def read_page(records: list[Any]) -> PageTasks:
    """The careful path: each record checked on its own, rejects kept with their reason."""
    loadable: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for record in records:
        reason = check_record(record)
        if reason is not None:
            rejects.append(Reject(reason, to_json(record)))
            continue
        if type(record["task_time"]) is not str or not record["task_time"].isdigit():
            # a JSON number (or padded text), kept as the digits the API documents
            text, _ = parse_task_time(record["task_time"])  # type: ignore[misc]
            record = {**record, "task_time": text}
        loadable.append(record)
    columns = [pa.array([r.get(f) for r in loadable], pa.string()) for f in TASK_FIELDS] + [
        pa.array([extra_fields(r) for r in loadable], pa.string())
    ]
    ids = [r["task_id"] for r in records if isinstance(r, dict) and type(r.get("task_id")) is str]
    return PageTasks(pa.table(columns, PAGE_TASKS_SCHEMA), rejects, ids, len(records))


class TaskBatch:
    """Loadable rows of one project, pass by pass and page by page, plus the records that were
    rejected."""

    def __init__(self, project_id: str, region: str, run_id: str) -> None:
        self.project_id = project_id
        self.region = region
        self.run_id = run_id
        self._pages: list[pa.Table] = []
        self._pass_start = 0  # the first of `_pages` that the current pass added
        self._pass_rejects: list[list[Reject]] = []  # each pass's
        self._taken = 0  # tasks in the pages taken

    def start_pass(self) -> None:
        """The pages added from now on are another read of the whole list."""
        self._pass_start = len(self._pages)
        self._pass_rejects.append([])

    def add(self, page: PageTasks) -> None:
        if not self._pass_rejects:
            self.start_pass()
        self._pages.append(page.tasks)
        self._pass_rejects[-1].extend(page.rejects)

    def keep_last_pass(self) -> None:
        """Forgets every pass but the last. Once passes agree, the last one is what the API
        lists: a task only an earlier pass saw has gone since, and is not loaded as listed."""
        del self._pages[: self._pass_start]
        del self._pass_rejects[:-1]
        self._pass_start = 0

    @property
    def rejects(self) -> list[Reject]:
        """The rejected records. A record that several passes saw counts once: each is kept as
        often as the one pass that saw it most often (two identical records in a page stay two).
        """
        seen: Counter[Reject] = Counter()
        for rejects in self._pass_rejects:
            seen |= Counter(rejects)
        return list(seen.elements())

    @property
    def rows_held(self) -> int:
        """Rows in the pages held, a task read twice counted twice: cheap, unlike `len`."""
        return sum(len(page) for page in self._pages)

    def __len__(self) -> int:
        """Tasks read, each once, however often it was read."""
        if not self._pages:  # none read, or their pages taken
            return self._taken
        chunks = [chunk for page in self._pages for chunk in page["task_id"].chunks]
        return pc.count_distinct(pa.chunked_array(chunks, pa.string())).as_py()

    def take_pages(self) -> list[pa.Table]:
        """The pages' rows with each task once: a task read again (several passes, a shifting
        list) is taken from its last read. The batch lets its pages go and keeps their count."""
        self._taken = len(self)
        pages, self._pages = self._pages, []
        if self._taken == sum(len(page) for page in pages):
            return pages
        table = pa.concat_tables(pages)
        last = {task_id: row for row, task_id in enumerate(table["task_id"].to_pylist())}
        return [table.take(sorted(last.values()))]


def tasks_table(batches: list[TaskBatch]) -> pa.Table:
    """The rows of every batch as one table of TASKS_SCHEMA, `failed_at` converted from epoch
    ms; the batches let their pages go. Row hashes are added next (see `with_row_hashes`).

    Built for many projects at once (a chunk of the spill), not per project in the read
    threads: there, contending with the reads, arrow's dozen calls per project cost several
    times their CPU.
    """
    pages: list[pa.Table] = []
    owners: list[TaskBatch] = []  # the batches with rows, in order
    ends: list[int] = []  # the row after each owner's last
    for batch in batches:
        taken = batch.take_pages()
        rows = sum(len(page) for page in taken)
        if rows:
            pages += taken
            owners.append(batch)
            ends.append((ends[-1] if ends else 0) + rows)
    table = pa.concat_tables([PAGE_TASKS_SCHEMA.empty_table(), *pages])
    run_ends = pa.array(ends, pa.int64())

    def repeated(field: str) -> pa.Array:
        """Each owner's `field` on each of its rows, in one call: an array per page costs a
        call per page."""
        values = pa.array([getattr(batch, field) for batch in owners], pa.string())
        return pc.run_end_decode(pa.RunEndEncodedArray.from_arrays(run_ends, values))

    # Epoch ms read as a ms timestamp, then widened to DuckDB's native microseconds.
    millis = pc.cast(table["task_time"], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    columns = {
        **{name: table[name] for name in PAGE_TASKS_SCHEMA.names},
        "project_id": repeated("project_id"),
        "region": repeated("region"),
        "run_id": repeated("run_id"),
        "failed_at": millis.cast(pa.timestamp("us", tz="UTC")),
    }
    return pa.table([columns[name] for name in TASKS_SCHEMA.names], TASKS_SCHEMA)


def release_memory() -> None:
    """Hands the memory of rows already freed back to the system, for what comes next.

    Both allocators keep freed memory for reuse: arrow's, and the C library's, which held the
    parsed pages. Kept, it would add to the load's peak, the highest of a run.
    """
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def extra_fields(record: Mapping[str, Any]) -> str | None:
    """Fields the API added beyond the documented ones, as JSON text; None when there are none."""
    if len(record) <= len(TASK_FIELDS) and record.keys() <= _KNOWN:
        return None
    extra = {k: v for k, v in record.items() if k not in _KNOWN}
    return to_json(extra) if extra else None


def with_row_hashes(table: pa.Table) -> pa.Table:
    """The table as one of FAILED_TASKS_SCHEMA: each row gets the identity of its version, so
    that any change in what the API says makes a new one.

    md5 over the length-prefixed fields, `-` for a null (no text, control characters included,
    can fake a field boundary), computed by DuckDB in one query over all rows: per row it is ten
    times faster than Python, and one query instead of one per project saves DuckDB's per-query
    cost. One `concat` builds each row's text once, where chained `||` builds it a field at a
    time.
    """
    parts = []
    for field in ("project_id", "region", *_HASHED_FIELDS):
        if TASKS_SCHEMA.field(field).nullable:
            # concat skips a null, so a null field leaves only the '-' of the coalesce
            parts.append(f"coalesce(length({field}) || ':', '-'), {field}")
        else:
            parts.append(f"length({field}), ':', {field}")
    with _DUCKDB.cursor() as con:
        con.register("tasks", table)
        # Into a table first: DuckDB then hashes on every core, and handing over the result
        # in order is a plain scan. Fetched straight to arrow, it hashes on one core.
        con.execute(
            f"create temp table row_hashes as select md5(concat({', '.join(parts)})) as row_hash"
            " from tasks"
        )
        hashes = con.execute("select row_hash from row_hashes").to_arrow_table()
    # DuckDB keeps the scan's row order, so the hashes line up with the rows.
    table = table.append_column("row_hash", hashes["row_hash"])
    return table.select(FAILED_TASKS_SCHEMA.names).cast(FAILED_TASKS_SCHEMA)


def fingerprints(table: pa.Table) -> dict[str, str]:
    """What each project's rows say, in one hash per project, whatever their order: the count
    and the XOR of their row hashes. No two rows of a project cancel out: each is another task.
    An XOR needs no sort, as chaining the hashes would.
    """
    with _DUCKDB.cursor() as con:
        con.register("tasks", table.select(["project_id", "row_hash"]))
        rows = con.execute(
            "select project_id, md5(count(*) || ':' || bit_xor(md5_number(row_hash)))"
            " from tasks group by project_id"
        ).fetchall()
    return dict(rows)
