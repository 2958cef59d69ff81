"""One run: configure dlt, extract and load every project, record the run, build the models."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
import duckdb
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationException,
)
from dlt.pipeline.exceptions import PipelineStepFailed

from kps_warehouse import dlt_adapter
from kps_warehouse.crash_points import crash_point
from kps_warehouse.ops.postgres import PostgresSession, PostgresWarehouse
from kps_warehouse.ops.warehouse import NO_COMPACTION, Warehouse
from kps_warehouse.source import (
    Project,
    check_settings,
    configured_projects,
    kps,
    new_run_id,
    project_id_hints,
    resolve_settings,
)
from kps_warehouse.source.client import ConfigError
from kps_warehouse.transform import postgres as postgres_models
from kps_warehouse.transform import runner

PIPELINE_NAME = "kps_warehouse"
DATASET = "kps_raw"
DEFAULT_WAREHOUSE = Path("warehouse") / "kps.duckdb"
LOAD_MEMORY_LIMIT = "256MB"
DEFAULT_LOCK_WAIT_SECONDS = 30.0
DESTINATIONS = ("duckdb", "postgres")
# How each destination takes a load: DuckDB reads the parquet files as they are; PostgreSQL
# takes csv through COPY, about 3 times faster than dlt's batched INSERTs.
FILE_FORMATS = {"duckdb": "parquet", "postgres": "csv"}


class RunError(Exception):
    """The run as a whole failed (not one project): `str()` is the one line to print."""


@dataclass
class ProjectOutcome:
    project_id: str
    region: str
    status: str
    tasks_seen: int
    rejected: int
    complete: bool
    error: str | None
    note: str | None
    new_versions: int = 0
    cleared: int = 0


@dataclass
class Configuration:
    """What a run will read, checked before it touches the warehouse."""

    projects: list[Project] | None  # None: every project IAM lists (`project_ids = "*"`)
    credentials: str  # the settings of the credentials in use, to name when they are refused
    hints: list[str]  # warnings about settings that may be wrong, such as a project name


@dataclass
class RunResult:
    run_id: str
    warehouse: Path | str  # the DuckDB file, or "postgres host:port/database"
    projects: list[ProjectOutcome] = field(default_factory=list)
    transform: runner.TransformResult | None = None
    transform_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[ProjectOutcome]:
        return [p for p in self.projects if p.status != "ok"]

    @property
    def exit_code(self) -> int:
        """0 all loaded, 3 some projects failed, 1 all failed or the models failed."""
        if self.transform_error or (self.transform and self.transform.failed):
            return 1
        if not self.failed:
            return 0
        return 1 if len(self.failed) == len(self.projects) else 3


def destination() -> str:
    """`kps_warehouse.destination`: `duckdb` (the default) or `postgres`."""
    value = dlt.config.get("kps_warehouse.destination") or "duckdb"
    if value not in DESTINATIONS:
        raise ConfigError(
            f"kps_warehouse.destination {value!r} is not one of {', '.join(DESTINATIONS)}"
        )
    return value


def postgres_warehouse() -> PostgresWarehouse:
    """The database `destination.postgres.credentials` names."""
    try:
        return PostgresWarehouse(dlt_adapter.postgres_credentials())
    except ConfigFieldMissingException:
        raise ConfigError(
            "destination.postgres.credentials is missing: a connection string such as"
            " postgresql://user@host:5432/database, or its parts"
        ) from None
    except ConfigurationException as exc:
        raise ConfigError(config_message(exc)) from exc


def warehouse_path() -> Path:
    """`destination.duckdb.credentials` as a file path, by default warehouse/kps.duckdb."""
    if destination() == "postgres":
        raise ConfigError(
            "kps_warehouse.destination is postgres: this command reads a DuckDB warehouse only"
            " so far; on PostgreSQL, use `run`, `transform`, `status` and `report`"
        )
    value = dlt.config.get("destination.duckdb.credentials")
    if not value:
        return DEFAULT_WAREHOUSE.absolute()
    if not isinstance(value, str):
        raise ConfigError("destination.duckdb.credentials must be the path of the warehouse file")
    return Path(value.removeprefix("duckdb:///")).expanduser().absolute()


def pipelines_dir(warehouse: Path) -> Path:
    """dlt's working folder: `kps_warehouse.pipelines_dir`, by default `.dlt/` beside the
    warehouse file, never the home directory."""
    value = dlt.config.get("kps_warehouse.pipelines_dir")
    return Path(value).expanduser().absolute() if value else warehouse.parent / ".dlt"


def lock_wait_seconds() -> float:
    """How long a run waits for another to finish: `kps_warehouse.lock_wait_seconds`."""
    value = dlt.config.get("kps_warehouse.lock_wait_seconds")
    try:
        return DEFAULT_LOCK_WAIT_SECONDS if value is None else float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"kps_warehouse.lock_wait_seconds {value!r} is not a number") from None


def pipeline_name(warehouse: Path) -> str:
    """One dlt pipeline per warehouse file, so the demo's state never mixes with real runs'."""
    return f"{PIPELINE_NAME}_{warehouse.stem}"


@contextmanager
def load_connection(database: Path, *, compact: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """The one connection a run loads through. dlt, given a file, opens and closes its own for
    each load job, and every close checkpoints the file: the staging copy of the rows was
    written to disk only to be deleted. Held open, the file is checkpointed once, at the end;
    that checkpoint compacts tables only if `compact` (see `NO_COMPACTION`)."""
    connection = duckdb.connect(
        str(database),
        config={
            **({} if compact else NO_COMPACTION),
            # Row order means nothing in these tables; without it DuckDB writes a load's rows
            # on every core.
            "preserve_insertion_order": False,
            # DuckDB's default is 80% of the machine; a load spills past this instead, and a
            # larger limit loaded no faster (benchmarks/HISTORY.md).
            "memory_limit": LOAD_MEMORY_LIMIT,
        },
    )
    try:
        yield connection
    finally:
        connection.close()


def make_pipeline(warehouse: Warehouse, connection: duckdb.DuckDBPyConnection) -> dlt.Pipeline:
    """The warehouse's dlt pipeline, loading through `connection` (see `load_connection`)."""
    apply_dlt_defaults()
    return dlt.pipeline(
        pipeline_name=pipeline_name(warehouse.path),
        destination=dlt_adapter.duckdb_destination(connection),
        dataset_name=DATASET,
        pipelines_dir=str(pipelines_dir(warehouse.path)),
        progress=dlt_adapter.CrashPointCollector(),
    )


def postgres_pipeline(target: PostgresWarehouse) -> tuple[Path, str]:
    """dlt's working folder and pipeline name for a PostgreSQL database: the folder a DuckDB
    warehouse would have (`kps_warehouse.pipelines_dir`), one pipeline per database."""
    return pipelines_dir(
        DEFAULT_WAREHOUSE.absolute()
    ), f"{PIPELINE_NAME}_postgres_{target.credentials.database}"


def drop_warehouse(path: Path | None = None) -> None:
    """Deletes the warehouse, its writer copy and dlt's state: the next run starts from nothing."""
    if path is None and destination() == "postgres":
        target = postgres_warehouse()
        with target.locked(lock_wait_seconds()) as session:
            target.drop(session)
            dlt_adapter.drop_working_folder(*postgres_pipeline(target))
        return
    warehouse = Warehouse(path or warehouse_path())
    with warehouse.locked(lock_wait_seconds()):
        warehouse.drop()
        drop_dlt_state(path)


def drop_dlt_state(path: Path) -> None:
    """Deletes dlt's working folder of this warehouse (state, pending packages, traces)."""
    dlt_adapter.drop_working_folder(pipelines_dir(path), pipeline_name(path))


def run(
    warehouse: Path | None = None,
    *,
    transform: bool = True,
    before_publish: Callable[[Path, RunResult], None] | None = None,
    **source_args: Any,
) -> RunResult:
    """Extracts every configured project, loads it, builds the models, publishes the warehouse.

    `before_publish` runs last in the writer copy, under the lock (the alerts step).
    `source_args` override configuration (the demo passes the simulator's endpoint this way).
    Raises ConfigError for settings that cannot work and RunError when nothing could be loaded.
    """
    check_configuration(**source_args)  # a setting that cannot work writes nothing
    if warehouse is None and destination() == "postgres":
        return run_postgres(transform=transform, before_publish=before_publish, **source_args)
    target = Warehouse(warehouse or warehouse_path())
    run_id = new_run_id()
    clock = Phases()
    with old_objects_frozen(), target.writing(lock_wait_seconds()) as writer:
        if not writer.exists():
            # dlt's state (what was loaded, the projects' fingerprints) lives with the warehouse:
            # no warehouse, no state, or an unchanged project would never be loaded again.
            drop_dlt_state(target.path)
        # the models that follow decide whether this run compacts
        with load_connection(writer, compact=not transform) as connection:
            pipeline = make_pipeline(target, connection)
            extract_and_load(pipeline, connection, clock, "duckdb", run_id=run_id, **source_args)
        with duckdb.connect(str(writer), read_only=True) as con:
            outcomes = read_outcomes(con.execute(OUTCOMES_SQL, [run_id]).fetchall())
        result = RunResult(run_id, target.path, outcomes)
        if transform:
            with clock("transform"):
                build_models(writer, result, keep_unchanged=True)
        if before_publish:
            with clock("alerts"):
                before_publish(writer, result)
        crash_point("before-publish")
        clock.start("publish")
    clock.stop()
    result.seconds = clock.seconds
    return result


def run_postgres(
    *,
    transform: bool,
    before_publish: Callable[[Path, RunResult], None] | None,
    **source_args: Any,
) -> RunResult:
    """`run` into PostgreSQL, under the database's advisory lock: load, then the models."""
    if before_publish:
        raise ConfigError(
            "kps_warehouse.alerts.receivers: alerts keep their state in DuckDB only so far;"
            " a run into PostgreSQL takes no receivers"
        )
    target = postgres_warehouse()
    run_id = new_run_id()
    clock = Phases()
    folder, name = postgres_pipeline(target)
    with (
        old_objects_frozen(),
        target.locked(lock_wait_seconds()) as session,
        session.cursor() as cursor,
    ):
        if not target.has_raw_tables(session):
            dlt_adapter.drop_working_folder(folder, name)  # no warehouse, no state (see `run`)
        apply_dlt_defaults()
        pipeline = dlt.pipeline(
            pipeline_name=name,
            destination=dlt_adapter.postgres_destination(target.credentials),
            dataset_name=DATASET,
            pipelines_dir=str(folder),
            progress=dlt_adapter.CrashPointCollector(),
        )
        extract_and_load(pipeline, cursor, clock, "postgres", run_id=run_id, **source_args)
        cursor.execute(OUTCOMES_SQL.replace("?", "%s"), [run_id])
        result = RunResult(run_id, f"postgres {target.location}", read_outcomes(cursor.fetchall()))
        if transform:
            with clock("transform"):
                build_models(session, result)
    clock.stop()
    result.seconds = clock.seconds
    return result


def extract_and_load(
    pipeline: dlt.Pipeline,
    connection: dlt_adapter.Executes,
    clock: Phases,
    destination_name: str,
    **source_args: Any,
) -> None:
    """Finishes a killed run's load, then extracts and loads this one's, through `pipeline`."""
    finish_pending_load(pipeline, connection)
    with clock("extract"):
        source = make_source(**source_args)
    with clock("load"):
        try:
            pipeline.run(source, loader_file_format=FILE_FORMATS[destination_name])
        except PipelineStepFailed as exc:
            raise RunError(f"{exc.step} step failed: {root_cause(exc)}") from exc
    dlt_adapter.drop_load_leftovers(connection, DATASET)


@contextmanager
def old_objects_frozen() -> Iterator[None]:
    """Leaves what was alive before the run out of garbage collection while it lasts.

    That is mostly what the imports built (dlt, pyarrow, DuckDB): objects that live as long as
    the process, yet every full collection walks them all. They are unfrozen after, so garbage
    among them is collected later, and a process making many runs keeps nothing extra.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def dry_run(**source_args: Any) -> list[ProjectOutcome]:
    """Pages the API exactly as a run would and counts, writing nothing."""
    check_configuration(**source_args)
    source = make_source(run_id=new_run_id(), **source_args)
    [table] = list(source.resources["runs"])
    columns = (
        "project_id",
        "region",
        "status",
        "tasks_seen",
        "rejected",
        "complete",
        "error",
        "note",
    )
    return [ProjectOutcome(**{c: row[c] for c in columns}) for row in table.to_pylist()]


def make_source(**source_args: Any) -> Any:
    """The kps source with its configuration resolved; extraction happens here."""
    try:
        return kps(**source_args)
    except ConfigurationException as exc:
        raise ConfigError(config_message(exc)) from exc


def check_configuration(**source_args: Any) -> Configuration:
    """Every setting a run needs, checked without a request; raises ConfigError naming the
    setting, and where configuration was looked for when none was found at all."""
    try:
        settings = resolve_settings(**source_args)
        projects = check_settings(settings)
    except (ConfigurationException, ConfigError) as exc:
        raise ConfigError(nothing_configured() or config_message(exc)) from exc
    return Configuration(
        projects, settings.credentials.settings_in_use(), project_id_hints(projects or [])
    )


def configured_project_ids() -> list[str] | None:
    """The configured projects' ids, for `status`; None when they cannot be told without a
    request (`project_ids = "*"`) or none are configured here: then every project counts."""
    try:
        projects = configured_projects(resolve_settings())
    except (ConfigurationException, ConfigError):
        return None
    return None if projects is None else [p.project_id for p in projects]


def nothing_configured() -> str | None:
    """Where dlt looked for configuration, when it found none there nor in the environment:
    the usual reason is a working directory other than the one holding `.dlt/`."""
    if any(name.startswith("SOURCES__KPS__") for name in os.environ):
        return None
    context = dlt.current.run_context()
    folders = [Path(context.settings_dir).absolute(), Path(context.global_dir).absolute()]
    if any((folder / name).exists() for folder in folders for name in TOML_FILES):
        return None
    return (
        f"none found: no .dlt/config.toml or secrets.toml in {folders[0]} (the working"
        f" directory) or {folders[1]}, and no SOURCES__KPS__* variable in the environment;"
        " run from the folder that holds .dlt/, or set the variables"
    )


TOML_FILES = ("config.toml", "secrets.toml")


class Phases:
    """Wall time per phase of a run, for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def start(self, name: str) -> None:
        self.stop()
        self._current = (name, time.monotonic())

    def stop(self) -> None:
        if self._current:
            name, began = self._current
            self.seconds[name] = round(time.monotonic() - began, 3)
            self._current = None

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.start(name)
        yield
        self.stop()


def transform_only(warehouse: Path | None = None) -> RunResult:
    """Rebuilds the models and runs the data tests, then publishes."""
    if warehouse is None and destination() == "postgres":
        database = postgres_warehouse()
        result = RunResult("", f"postgres {database.location}")
        with database.locked(lock_wait_seconds()) as session:
            build_models(session, result)
        return result
    target = Warehouse(warehouse or warehouse_path())
    result = RunResult("", target.path)
    missing = RunError(f"no warehouse at {target.path}: run `kps-warehouse run` first")
    if not (target.path.exists() or target.writer.exists()):
        raise missing  # before the lock: nothing is written
    with target.writing(lock_wait_seconds()) as writer:
        if not writer.exists():  # deleted while the lock was awaited
            raise missing
        build_models(writer, result)
    return result


def build_models(
    database: Path | PostgresSession, result: RunResult, *, keep_unchanged: bool = False
) -> None:
    """The models built into `result`; a run rebuilds only what its load changed, while
    `transform` rebuilds every one (after a hand-made change to a table, say). On PostgreSQL
    (a session) every build is a full one."""
    try:
        if isinstance(database, Path):
            result.transform = runner.transform(database, keep_unchanged=keep_unchanged)
        else:
            result.transform = postgres_models.transform(database)
    except runner.MissingSourceError as exc:
        raise RunError(f"{result.warehouse}: {exc}") from None  # nothing loaded: not published
    except runner.ModelError as exc:
        result.transform_error = str(exc)


def finish_pending_load(pipeline: dlt.Pipeline, connection: dlt_adapter.Executes) -> None:
    """Loads what a killed run extracted but did not load, before this run extracts anew."""
    try:
        dlt_adapter.finish_pending_load(pipeline, connection, DATASET)
    except PipelineStepFailed as exc:
        raise RunError(f"finishing the previous run's load failed: {root_cause(exc)}") from exc


# This run's rows of kps_raw.runs, with what it changed: the warehouse, not memory, says what
# was loaded. Portable SQL, run on either destination; `?` is the run id.
OUTCOMES_SQL = """
with this_run as (select * from kps_raw.runs where run_id = ?),
-- A run starts and retires versions at its `started_at` only: these two scans are all it
-- changed, however large the table.
started as (
    select project_id, task_id
    from kps_raw.failed_tasks
    where _dlt_valid_from = (select max(started_at) from this_run)
        and project_id in (select project_id from this_run)
),
retired as (
    select project_id, task_id
    from kps_raw.failed_tasks
    where _dlt_valid_to = (select max(started_at) from this_run)
        and project_id in (select project_id from this_run)
),
new_versions as (
    select project_id, count(*) as n
    from started
    group by 1
),
-- retired without a successor: gone from the API, not changed
cleared as (
    select project_id, count(*) as n
    from retired
    where not exists (
        select 1 from started
        where started.project_id = retired.project_id and started.task_id = retired.task_id
    )
    group by 1
)
select
    project_id, region, status, tasks_seen, rejected, complete, error, note,
    coalesce(new_versions.n, 0), coalesce(cleared.n, 0)
from this_run
left join new_versions using (project_id)
left join cleared using (project_id)
order by project_id
"""


def read_outcomes(rows: list[tuple]) -> list[ProjectOutcome]:
    """The rows of OUTCOMES_SQL as outcomes."""
    return [ProjectOutcome(*row) for row in rows]


def config_message(exc: BaseException) -> str:
    """dlt's configuration errors as one line naming the missing or bad key."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConfigError):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def root_cause(exc: BaseException) -> str:
    """The innermost exception's first line: what actually went wrong."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# dlt settings this project relies on, unless the operator set them otherwise.
DLT_DEFAULTS = {
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    # dlt keeps every loaded file by default: .dlt/ would grow by the size of every load.
    "LOAD__DELETE_COMPLETED_JOBS": "true",
    # The extracted parquet files live only until the load, on the same machine: compressing
    # them costs a large share of the extract step and saves nothing.
    "DATA_WRITER__COMPRESSION": "none",
}


def apply_dlt_defaults() -> None:
    for name, value in DLT_DEFAULTS.items():
        os.environ.setdefault(name, value)
