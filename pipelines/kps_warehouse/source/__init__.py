"""dlt source for Huawei Cloud KPS: the failed key-pair tasks of every configured project."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path

import dlt
import pyarrow as pa
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import CredentialsConfiguration
from dlt.common.typing import TSecretStrValue
from dlt.sources import DltResource

from kps_warehouse.crash_points import crash_point
from kps_warehouse.dlt_adapter import scd2_history, source_state, with_load_id, working_dir

from .auth import DEFAULT_IAM_ENDPOINT, AkSkAuth, Auth, PasswordAuth, TokenAuth
from .client import ConfigError, KpsClient, PageMark, Project, ProjectRead, require_https
from .records import release_memory
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_ENDPOINT,
    DEFAULT_PAGE_SIZE,
    FAILED_TASKS_SCHEMA,
    REJECTED_RECORDS_SCHEMA,
    RUNS_SCHEMA,
)
from .spill import TaskSpill

# The fingerprint of a project that lists nothing.
EMPTY = "d41d8cd98f00b204e9800998ecf8427e"

__all__ = ["KpsCredentials", "Project", "kps", "projects_from_config", "read_all"]


@configspec
class KpsCredentials(CredentialsConfiguration):
    """`sources.kps.credentials`: a ready token, an IAM password, or an AK/SK pair."""

    auth_token: TSecretStrValue | None = None
    user_name: str | None = None
    password: TSecretStrValue | None = None
    domain_name: str | None = None
    iam_endpoint: str = DEFAULT_IAM_ENDPOINT
    access_key: str | None = None
    secret_key: TSecretStrValue | None = None
    security_token: TSecretStrValue | None = None

    def to_auth(self) -> Auth:
        """The first complete kind of credentials: token, then password, then AK/SK."""
        require_https("sources.kps.credentials.iam_endpoint", self.iam_endpoint)
        if self.auth_token:
            return TokenAuth(self.auth_token)
        if self.user_name and self.password and self.domain_name:
            return PasswordAuth(self.user_name, self.password, self.domain_name, self.iam_endpoint)
        if self.access_key and self.secret_key:
            return AkSkAuth(self.access_key, self.secret_key, self.security_token)
        raise ConfigError(
            "no credentials: set sources.kps.credentials.auth_token, or user_name, password and"
            " domain_name, or access_key and secret_key (or their SOURCES__KPS__CREDENTIALS__*"
            " environment variables)"
        )


def projects_from_config(
    project_ids: Sequence[str] | str | None,
    region: str | None,
    projects: dict[str, Sequence[str]] | None = None,
) -> list[Project]:
    """`project_ids` of `region`, plus `projects` (region → ids), each once, in that order."""
    project_ids = project_id_list(project_ids)
    pairs: list[tuple[str, str]] = []
    if project_ids:
        if not region:
            raise ConfigError("sources.kps.region is not set, but sources.kps.project_ids is")
        pairs += [(pid, region) for pid in project_ids]
    for other_region, ids in (projects or {}).items():
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ConfigError(f"sources.kps.projects.{other_region} is not a list of project ids")
        pairs += [(pid, other_region) for pid in ids]
    if not pairs:
        raise ConfigError("no projects: set sources.kps.project_ids and sources.kps.region")
    return list(dict.fromkeys(Project(pid, reg) for pid, reg in pairs))


def project_id_list(value: Sequence[str] | str | None) -> list[str]:
    """`project_ids` as a list: a TOML list, a JSON list from the environment, or one id."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [text] if text else []
        try:
            value = json.loads(text)
        except ValueError:
            raise ConfigError(f"sources.kps.project_ids {text[:60]!r} is not a JSON list") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("sources.kps.project_ids is not a list of project ids")
    return value


def select_projects(
    client: KpsClient,
    iam_endpoint: str,
    project_ids: Sequence[str] | str | None,
    region: str | None,
    projects: dict[str, Sequence[str]] | None,
    only: Sequence[str] | None,
) -> list[Project]:
    """The configured projects, or every project IAM lists for `project_ids = "*"`, narrowed
    to `only` when given."""
    if project_id_list(project_ids) == ["*"]:
        wanted = client.list_projects(iam_endpoint)
        if not wanted:
            raise ConfigError(
                "project_ids is '*', but IAM lists no project these credentials reach"
            )
    else:
        wanted = projects_from_config(project_ids, region, projects)
    if only:
        unknown = sorted(set(only) - {p.project_id for p in wanted})
        if unknown:
            raise ConfigError(f"--project {', '.join(unknown)}: not among the configured projects")
        wanted = [p for p in wanted if p.project_id in set(only)]
    return wanted


def read_all(
    client: KpsClient,
    projects: Sequence[Project],
    run_id: str,
    spill: TaskSpill,
    on_page: Callable[[Project, int], None] | None = None,
    known: Mapping[str, Sequence[PageMark]] | None = None,
) -> list[ProjectRead]:
    """Every project read, in the configured order. The rows of each read with rows to load
    go to `spill` as it finishes, while the other reads go on."""
    reads = {}
    for read in client.read_projects(projects, run_id, on_page, known):
        reads[read.project] = read
        if read.ok and not read.unchanged:
            spill.add(read.batch)
            crash_point("mid-extract")
    spill.flush()
    return [reads[p] for p in projects]


@dlt.source(name="kps", section="kps", max_table_nesting=0)
def kps(
    endpoint: str = DEFAULT_ENDPOINT,
    region: str | None = dlt.config.value,
    # str first: dlt cannot coerce "*" to a list, and a JSON list from the environment is parsed
    # by `project_id_list`.
    project_ids: str | list[str] | None = dlt.config.value,
    projects: dict[str, list[str]] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_retries: int = 5,
    backoff_seconds: float = 1.0,
    credentials: KpsCredentials = dlt.secrets.value,
    run_id: str | None = None,
    only: list[str] | None = None,
    on_page: Callable[[Project, int], None] | None = None,
) -> Sequence[DltResource]:
    """The failed tasks of every configured project, with the rejects and one run row each.

    The projects are read up front: which projects were read completely decides which of their
    earlier tasks can be marked cleared, and that must be known before the load.
    """
    run_id = run_id or new_run_id()
    started_at = datetime.now(UTC)
    client = KpsClient(
        endpoint,
        credentials.to_auth(),
        page_size=page_size,
        concurrency=concurrency,
        max_retries=max_retries,
        backoff_seconds=backoff_seconds,
    )
    wanted = select_projects(client, credentials.iam_endpoint, project_ids, region, projects, only)
    state = last_state()
    last: dict[str, str] = state.get("fingerprints", {})
    known = {
        pid: [PageMark(*mark) for mark in marks]
        for pid, marks in state.get("pages", {}).items()
        if pid in last
    }
    spill = TaskSpill(spill_directory())
    reads = read_all(client, wanted, run_id, spill, on_page, known)
    listed = spill.fingerprints
    complete = {
        r.project.project_id: last[r.project.project_id]
        if r.unchanged
        else listed.get(r.project.project_id, EMPTY)
        for r in reads
        if r.complete
    }
    # A project read completely that says exactly what it said last time is left out of the
    # load: its tasks in the warehouse are already what the API lists.
    unchanged = {pid for pid, fp in complete.items() if last.get(pid) == fp}
    pages = {r.project.project_id: r.marks for r in reads if r.ok}
    return (
        failed_tasks(spill, complete, unchanged, started_at, pages),
        rejected_records(reads, started_at),
        runs(reads, run_id, started_at),
    )


def last_state() -> dict[str, dict]:
    """What the last runs left in dlt's source state: per project, the `fingerprints` of its
    last complete read and the `pages` that read saw (when one pass proved it whole).

    No pipeline (a dry run) means no state, and then nothing is skipped.
    """
    state = source_state()
    if state is None:
        return {}
    return {key: dict(state.get(key, {})) for key in ("fingerprints", "pages")}


def spill_directory() -> Path | None:
    """Where the rows wait for the load: in the pipeline's working folder, on the disk beside
    dlt's own files (a system temp folder may be memory). Without a pipeline (a dry run) they
    wait in memory."""
    folder = working_dir()
    return folder / "spilled_tasks" if folder else None


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def failed_tasks(
    spill: TaskSpill,
    listed: dict[str, str],
    unchanged: AbstractSet[str],
    started_at: datetime,
    pages: dict[str, list[PageMark] | None],
) -> DltResource:
    """One version per task and change, from the rows in `spill` but those of the `unchanged`
    projects. A task absent from a complete read of its project (a key of `listed`) is retired,
    cleared, at `started_at`, unless the project is unchanged; other projects retire nothing.
    Records the fingerprints `listed`, and the `pages` each read saw, in the source state as
    the data is extracted, so that they land with it."""
    changed = sorted(listed.keys() - unchanged)

    @dlt.resource(
        name="failed_tasks",
        columns=arrow_columns(FAILED_TASKS_SCHEMA),
        write_disposition=scd2_history(changed, started_at, "row_hash"),
    )
    def _failed_tasks() -> Iterator[pa.Table]:
        state = dlt.current.source_state()
        loaded_before = bool(state.get("fingerprints"))
        state.setdefault("fingerprints", {}).update(listed)
        kept = state.setdefault("pages", {})
        for project_id, marks in pages.items():
            if marks is None:
                kept.pop(project_id, None)
            else:
                kept[project_id] = [list(astuple(mark)) for mark in marks]
        try:
            if loaded_before and not changed and spill.fingerprints.keys() <= unchanged:
                # Nothing to add and nothing to clear (a run that changed nothing): no load
                # job, so no merge scans the history.
                return
            # An empty table still loads: it is how a project that lists nothing gets its tasks
            # cleared, and how a first run creates the table.
            yield with_load_id(FAILED_TASKS_SCHEMA.empty_table())
            # A few large tables, not one per project: dlt's cost is per table it is handed.
            for table in spill.tables(leave_out=unchanged):
                yield with_load_id(table)
        finally:
            spill.close()
        release_memory()  # the load that follows needs it more

    return _failed_tasks()


def rejected_records(reads: Sequence[ProjectRead], rejected_at: datetime) -> DltResource:
    """Every record that could not be loaded as is, with the reason and the record as JSON."""

    @dlt.resource(
        name="rejected_records",
        columns=arrow_columns(REJECTED_RECORDS_SCHEMA),
        write_disposition="append",
    )
    def _rejected_records() -> Iterator[pa.Table]:
        rows = [
            {
                "resource": "failed_tasks",
                "project_id": read.project.project_id,
                "region": read.project.region,
                "reason": reject.reason,
                "payload": reject.payload,
                "run_id": read.batch.run_id,
                "rejected_at": rejected_at,
                "reject_number": number,
            }
            for read in reads
            for number, reject in enumerate(read.batch.rejects)
        ]
        yield with_load_id(pa.Table.from_pylist(rows, REJECTED_RECORDS_SCHEMA))

    return _rejected_records()


def runs(reads: Sequence[ProjectRead], run_id: str, started_at: datetime) -> DltResource:
    """One row per project: how its read went."""

    @dlt.resource(name="runs", columns=arrow_columns(RUNS_SCHEMA), write_disposition="append")
    def _runs() -> Iterator[pa.Table]:
        rows = [
            {
                "run_id": run_id,
                "project_id": read.project.project_id,
                "region": read.project.region,
                "started_at": started_at,
                "finished_at": datetime.fromtimestamp(read.finished_at, UTC),
                "status": "ok" if read.ok else "failed",
                "tasks_seen": read.tasks_seen,
                "rejected": len(read.batch.rejects),
                "error": read.error,
                "complete": read.ok and read.complete,
                "note": "; ".join(read.notes) or None,
                "pages": read.pages,
                "requests": read.requests,
            }
            for read in reads
        ]
        yield with_load_id(pa.Table.from_pylist(rows, RUNS_SCHEMA))

    return _runs()


def arrow_columns(schema: pa.Schema) -> dict[str, dict[str, object]]:
    """dlt column hints that match an arrow schema, so dlt and arrow agree on every type."""
    types = {
        pa.string(): "text",
        pa.int64(): "bigint",
        pa.bool_(): "bool",
        pa.timestamp("us", tz="UTC"): "timestamp",
    }
    return {f.name: {"data_type": types[f.type], "nullable": f.nullable} for f in schema}
