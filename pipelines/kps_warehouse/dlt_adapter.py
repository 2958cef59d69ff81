"""Everything this project asks of dlt beyond its documented use, in one place.

Each function leans on how dlt (pinned <1.32) behaves inside: its column and table names, its
staging schema, its state table, its load packages on disk. `tests/test_dlt_adapter.py` pins each
of those behaviours, so a dlt upgrade that changes one fails there, by name, and nowhere else.
Nothing outside this module names a dlt table or state row; the history columns dlt adds
(`_dlt_valid_from`, `_dlt_valid_to`) are the warehouse's public columns, so SQL reads them.
"""

from __future__ import annotations

import shutil
from collections.abc import MutableMapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import dlt
import duckdb
import pyarrow as pa
from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.exceptions import PipelineStateNotAvailable
from dlt.common.pipeline import current_pipeline
from dlt.common.runtime.collector import NullCollector
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.common.typing import TSecretStrValue
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.destinations.impl.postgres.configuration import PostgresCredentials

from kps_warehouse.crash_points import crash_point

LOAD_ID = "_dlt_load_id"
LOAD_ID_FIELD = pa.field(LOAD_ID, pa.string(), nullable=False)

# What makes a row unique in each table a resumed load can double.
ROW_KEYS = {
    "failed_tasks": "project_id, task_id, row_hash, _dlt_valid_from",
    "runs": "run_id, project_id",
    "rejected_records": "run_id, project_id, reject_number",
}
# The tables loaded by merge: dlt keeps a copy of their rows in `<dataset>_staging`.
MERGED_TABLES = ("failed_tasks",)


class Executes(Protocol):
    """A DuckDB connection or a psycopg2 cursor: what the clean-up statements run through."""

    def execute(self, query: str, /) -> Any: ...


@configspec(init=False)
class OptionalPasswordCredentials(PostgresCredentials):
    """dlt's PostgreSQL credentials, where dlt demands a password even from a server that
    trusts the user (`postgresql://postgres@127.0.0.1:5432/test`): here it may be left out,
    and libpq asks for none unless the server does."""

    password: TSecretStrValue | None = None


@configspec
class PostgresDestination(BaseConfiguration):
    credentials: OptionalPasswordCredentials = None


def postgres_credentials() -> OptionalPasswordCredentials:
    """`destination.postgres.credentials` (a connection string or its parts), resolved by dlt's
    providers as dlt itself would. Raises dlt's ConfigurationException when it is missing."""
    resolved = resolve_configuration(PostgresDestination(), sections=("destination", "postgres"))
    return resolved.credentials


def postgres_destination(credentials: OptionalPasswordCredentials) -> Any:
    """dlt's PostgreSQL destination for resolved `credentials`."""
    return dlt.destinations.postgres(credentials=credentials)


def duckdb_destination(connection: duckdb.DuckDBPyConnection) -> Any:
    """dlt's DuckDB destination loading through an open `connection`: dlt, given a path, opens
    and closes a connection per load job, and each close checkpoints the file."""
    return dlt.destinations.duckdb(DuckDbCredentials(connection))


def scd2_history(
    retiring: Sequence[str], boundary: datetime, version_column: str
) -> dict[str, Any]:
    """dlt's scd2 merge, versions told apart by `version_column`, started and retired at
    `boundary`, where only rows of the `retiring` projects may be retired: a full extract of
    the others is not a full list of theirs. `destination_scope` (dlt 1.31) is an SQL condition
    on the history table, which dlt names by `{table}`."""
    scope = (
        "{table}.project_id in (" + ", ".join(f"'{pid}'" for pid in retiring) + ")"
        if retiring
        else "1 = 0"
    )
    return {
        "disposition": "merge",
        "strategy": "scd2",
        "destination_scope": scope,
        "boundary_timestamp": boundary,
        "row_version_column_name": version_column,
    }


def with_load_id(table: pa.Table) -> pa.Table:
    """The rows with dlt's `_dlt_load_id`, as dict rows get it. dlt adds none to arrow rows
    unless its normalizer rewrites every file to add it; added here, as the rows are extracted,
    no file is rewritten. Without a load (a dry run) the rows go as they are."""
    try:
        load_id = dlt.current.load_package_state()["load_id"]
    except CurrentLoadPackageStateNotAvailable:
        return table
    return table.append_column(LOAD_ID_FIELD, pa.repeat(pa.scalar(load_id), len(table)))


def source_state() -> MutableMapping[str, Any] | None:
    """The running source's dlt state, or None without a pipeline (a dry run)."""
    try:
        return dlt.current.source_state()
    except PipelineStateNotAvailable:
        return None


def working_dir() -> Path | None:
    """The running pipeline's working folder, or None without a pipeline (a dry run)."""
    pipeline = current_pipeline()
    return Path(pipeline.working_dir) if pipeline else None


def drop_working_folder(pipelines_dir: Path, pipeline_name: str) -> None:
    """Deletes a pipeline's working folder: its state, pending packages and traces."""
    shutil.rmtree(pipelines_dir / pipeline_name, ignore_errors=True)


def finish_pending_load(pipeline: dlt.Pipeline, connection: Executes, dataset: str) -> None:
    """Loads what a killed run extracted or normalized but did not load.

    dlt's `run` would do it too, but then return without extracting the source it was given,
    and this project's source reads the API as it is created, before `run`. So the pending load
    is finished first, and rows a resumed job doubled are dropped. Raises PipelineStepFailed.
    """
    pending = [*pipeline.list_extracted_load_packages()]
    if pending:
        pipeline.normalize()  # the arrow rows were written as parquet at extract
    pending += pipeline.list_normalized_load_packages()
    if pending:
        pipeline.load()
        drop_doubled_rows(connection, dataset, pending)


def drop_doubled_rows(connection: Executes, dataset: str, load_ids: list[str]) -> None:
    """A resumed load runs again a job whose rows the destination committed before the kill
    (dlt marks a job done only after): they then arrive twice. A version of a task, a project's
    row of a run, or a reject exists once; extra copies among the rows of the resumed
    `load_ids` are deleted, and no other row is looked at."""
    # the physical row address: DuckDB's rowid, PostgreSQL's ctid
    row = "rowid" if isinstance(connection, duckdb.DuckDBPyConnection) else "ctid"
    if not all(load_id.replace(".", "").isdigit() for load_id in load_ids):
        raise ValueError(f"unexpected dlt load ids {load_ids!r}")
    resumed = ", ".join(f"'{load_id}'" for load_id in load_ids)
    for table, key in ROW_KEYS.items():
        connection.execute(
            f"""
            delete from {dataset}.{table} where {row} in (
                select {row} from (
                    select {row}, row_number() over (partition by {key} order by {row}) as copy
                    from {dataset}.{table}
                    where {LOAD_ID} in ({resumed})
                ) as numbered where copy > 1
            )
            """
        )


def drop_load_leftovers(connection: Executes, dataset: str) -> None:
    """What a load leaves behind that nothing reads again.

    - The staging copy of the merged rows: dlt empties it only at the next load; emptied now,
      it is not written into the file when the connection closes.
    - Older versions of dlt's pipeline state. dlt stores the state anew whenever it changed
      (about 100 KB at 1,000 projects, most of it page digests) and keeps every version, but
      restores only the newest one of a completed load: a run every 5 minutes that sees a
      change would add 30 MB a day.
    """
    for table in MERGED_TABLES:
        connection.execute(f"truncate {dataset}_staging.{table}")
    connection.execute(
        f"""
        delete from {dataset}._dlt_pipeline_state
        where _dlt_load_id < (
            select max(state._dlt_load_id)
            from {dataset}._dlt_pipeline_state as state
            inner join {dataset}._dlt_loads as loads on loads.load_id = state._dlt_load_id
            where loads.status = 0
        )
        """
    )


class CrashPointCollector(NullCollector):
    """dlt's progress collector, used only to tell the crash points (see `crash_points.py`)
    where dlt is: a step starts, a file is normalized, a load job is done."""

    def __init__(self) -> None:
        super().__init__()
        self.step = ""

    def _start(self, step: str) -> None:
        self.step = step.split(" ", 1)[0]
        if self.step == "Normalize":
            crash_point("after-extract")

    def update(
        self,
        name: str,
        inc: int = 1,
        total: int | None = None,
        inc_total: int | None = None,
        message: str | None = None,
        label: str | None = None,
    ) -> None:
        if inc <= 0 or total is not None:
            return  # a count announced (or resumed), nothing done by this step yet
        if self.step == "Normalize" and name == "Files":
            crash_point("mid-normalize")
        elif self.step == "Load" and name == "Jobs":
            crash_point("mid-load")
