"""The SQL models and their runner, on a hand-made warehouse whose every mart row is known."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import yaml
from sqlglot.errors import ErrorLevel

from kps_simulator import Simulator
from kps_warehouse import load
from kps_warehouse.ops import demo
from kps_warehouse.transform.runner import (
    SQL_DIR,
    MissingSourceError,
    ModelError,
    TransformResult,
    build_order,
    transform,
)

RAW_TABLES = ("failed_tasks", "runs", "rejected_records")


def utc(text: str) -> datetime:
    """An ISO time read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


R1, R2, R3, R4, R5 = (
    utc("2026-01-25 12:00"),
    utc("2026-02-01 12:00"),
    utc("2026-02-03 12:00"),
    utc("2026-02-04 12:00"),
    utc("2026-02-06 12:00"),
)
RUN_IDS = {R1: "r1", R2: "r2", R3: "r3", R4: "r4", R5: "r5"}
D = date.fromisoformat
EPOCH = utc("1970-01-01 00:00")


@dataclass
class Raw:
    """Rows of the loader's tables, by column name, written to a fresh DuckDB file by `write`
    into tables defined exactly as a real load defines them."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)

    def run(self, project: str, at: datetime, status: str = "ok", complete: bool = True) -> None:
        self.runs.append(
            {
                "run_id": RUN_IDS.get(at, f"r-{at:%m%d}"),
                "project_id": project,
                "region": "cn-north-4",
                "started_at": at,
                "finished_at": at + timedelta(minutes=5),
                "status": status,
                "tasks_seen": 0,
                "rejected": 0,
                "error": None,
                "complete": complete,
                "note": None,
                "pages": 1,
                "requests": 1,
                "_dlt_load_id": f"load-{at:%m%d}",
            }
        )

    def version(
        self,
        project: str,
        task: str,
        failed_at: datetime,
        valid: tuple[datetime, datetime | None],
        *,
        keypair: str | None = "kp-a",
        server: tuple[str | None, str | None] = ("srv-1", "web-01"),
        code: str | None = "KPS.001",
        message: str = "Update public key error",
        operation: str = "FAILED_RESET",
    ) -> None:
        content = {
            "project_id": project,
            "region": "cn-north-4",
            "task_id": task,
            "operate_type": operation,
            "task_time": str((failed_at - EPOCH) // timedelta(milliseconds=1)),
            "failed_at": failed_at,
            "task_error_code": code,
            "task_error_msg": message,
            "server_id": server[0],
            "server_name": server[1],
            "keypair_name": keypair,
            "extra_fields": None,
        }
        self.versions.append(
            content
            | {
                # like the loader's: equal content, equal hash, even across a return
                "row_hash": "|".join(map(str, content.values())),
                "run_id": RUN_IDS.get(valid[0], "r?"),
                "_dlt_load_id": f"load-{valid[0]:%m%d}",
                "_dlt_valid_from": valid[0],
                "_dlt_valid_to": valid[1],
            }
        )

    def write(self, path: Path, like: Path) -> Path:
        """The rows in a new warehouse at `path`, its raw tables created as in `like`."""
        with duckdb.connect(str(path)) as con:
            con.execute(f"attach '{like}' as loaded (read_only)")
            definitions = con.execute(
                "select sql from duckdb_tables() where database_name = 'loaded'"
                " and schema_name = 'kps_raw' and table_name in (select unnest($tables))",
                {"tables": list(RAW_TABLES)},
            ).fetchall()
            assert len(definitions) == len(RAW_TABLES)
            con.execute("detach loaded")
            con.execute("create schema kps_raw")
            for (definition,) in definitions:
                con.execute(definition)
            for table, records in (("runs", self.runs), ("failed_tasks", self.versions)):
                if records:
                    columns = ", ".join(records[0])
                    con.executemany(
                        f"insert into kps_raw.{table} ({columns}) values ({_marks(records[0])})",
                        [list(record.values()) for record in records],
                    )
        return path


def _marks(record: dict[str, Any]) -> str:
    return ", ".join("?" * len(record))


def scenario() -> Raw:
    """Three projects over five runs: p1 with every kind of task, p2 odd, p3 without failures."""
    raw = Raw()
    for at in (R1, R2, R3, R5):
        raw.run("p1", at)
    raw.run("p1", R4, status="failed", complete=False)
    raw.run("p2", R1)
    raw.run("p2", R2)
    raw.run("p2", R3, complete=False)
    for at in (R1, R2, R3, R4, R5):
        raw.run("p3", at)

    raw.version("p1", "t1", utc("2026-01-20 08:00"), (R1, None))
    # the last millisecond of January and the first of February, both UTC
    raw.version(
        "p1", "t2", utc("2026-02-01 00:00:00.000"), (R2, R3),
        server=("srv-2", "web-02"), code=None, operation="FAILED_UNBIND",
    )  # fmt: skip
    for valid in ((R2, R3), (R5, None)):  # cleared, then listed again
        raw.version(
            "p1", "t3", utc("2026-01-31 23:59:59.999"), valid,
            keypair="kp-b", server=("srv-1", "web-01b"), code="KPS.002",
            operation="FAILED_REPLACE",
        )  # fmt: skip
    # the code arrives in a second version; R4 failed, so t4 was last seen by R3
    raw.version("p1", "t4", utc("2026-01-24 10:00"), (R1, R2), server=("srv-3", "db-01"), code=None)
    raw.version(
        "p1", "t4", utc("2026-01-24 10:00"), (R2, R5), server=("srv-3", "db-01"), code="KPS.003"
    )
    raw.version(
        "p1", "t10", utc("2026-01-26 09:00"), (R2, None),
        keypair="kp-c", server=("srv-5", "batch-02"), code="KPS.004",
    )  # fmt: skip
    for hour in range(1, 6):  # a spike of kp-c on srv-4
        raw.version(
            "p1", f"t{4 + hour}", utc(f"2026-02-02 0{hour}:00"), (R3, None),
            keypair="kp-c", server=("srv-4", "batch-01"), code="KPS.009",
        )  # fmt: skip
    # an incomplete pass (R3) left two current versions; the later one wins
    for message, valid_from in (("a", R1), ("b", R3)):
        raw.version(
            "p2", "u1", utc("2026-01-10 00:00"), (valid_from, None), keypair="kp-z",
            server=("srv-9", "api-01"), message=message, operation="FAILED_REPLACE",
        )  # fmt: skip
    return raw


@dataclass
class Built:
    """A warehouse file after `transform`, and what `transform` returned."""

    path: Path
    result: TransformResult


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse a real run loaded (simulator, dlt, DuckDB), a reject included: the raw
    tables of the scenarios are defined as it defines them, so they cannot drift apart."""
    path = tmp_path_factory.mktemp("loaded") / "kps.duckdb"
    with Simulator(seed=11) as sim:
        project_id = sim.add_project(tasks=1)
        task = sim.tasks(project_id)[0]
        sim.add_tasks(project_id, [{**task, "task_id": "bad", "task_time": "soon"}])
        result = load.run(path, transform=False, **demo.source_args(sim))
    assert [(p.status, p.tasks_seen, p.rejected) for p in result.projects] == [("ok", 1, 1)]
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, loaded: Path) -> Built:
    """The scenario, transformed once for all tests that only read it."""
    path = scenario().write(tmp_path_factory.mktemp("wh") / "kps.duckdb", loaded)
    return Built(path, transform(path))


def rows(path: Path, sql: str, time_zone: str = "UTC") -> list[tuple[Any, ...]]:
    """The rows of `sql`, read-only, in a session of `time_zone`."""
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute(f"set TimeZone = '{time_zone}'")
        return con.execute(sql).fetchall()


# --- the marts -----------------------------------------------------------------------------


def test_fct_failed_tasks_has_one_row_per_task_with_its_history(built: Built) -> None:
    assert rows(
        built.path,
        """
        select task_id, failed_day, error_code, first_seen_at, last_seen_at, cleared_at,
            is_open, hours_to_clear, version_count, times_cleared
        from marts.fct_failed_tasks order by project_id, task_id
        """,
    ) == [
        ("t1", D("2026-01-20"), "KPS.001", R1, R5, None, True, None, 1, 0),
        ("t10", D("2026-01-26"), "KPS.004", R2, R5, None, True, None, 1, 0),
        ("t2", D("2026-02-01"), "UNKNOWN", R2, R2, R3, False, 60.0, 1, 1),
        ("t3", D("2026-01-31"), "KPS.002", R2, R5, None, True, None, 2, 1),
        ("t4", D("2026-01-24"), "KPS.003", R1, R3, R5, False, 314.0, 2, 1),
        ("t5", D("2026-02-02"), "KPS.009", R3, R5, None, True, None, 1, 0),
        ("t6", D("2026-02-02"), "KPS.009", R3, R5, None, True, None, 1, 0),
        ("t7", D("2026-02-02"), "KPS.009", R3, R5, None, True, None, 1, 0),
        ("t8", D("2026-02-02"), "KPS.009", R3, R5, None, True, None, 1, 0),
        ("t9", D("2026-02-02"), "KPS.009", R3, R5, None, True, None, 1, 0),
        ("u1", D("2026-01-10"), "KPS.001", R1, R3, None, True, None, 2, 0),
    ]


def test_of_two_current_versions_the_later_one_describes_the_task(built: Built) -> None:
    sql = "select error_msg, is_open from marts.fct_failed_tasks where task_id = 'u1'"
    assert rows(built.path, sql) == [("b", True)]


def test_keypair_trend_is_zero_filled_with_7_day_windows_across_the_month_end(
    built: Built,
) -> None:
    # kp-a failed on Jan 20, Jan 24 and Feb 1; the latest day in the data is Feb 2
    assert rows(
        built.path,
        """
        select day, failures, failures_7d, failures_prev_7d, servers_affected
        from marts.failure_trend_keypair
        where project_id = 'p1' and keypair_name = 'kp-a' order by day
        """,
    ) == [
        (D("2026-01-20"), 1, 1, 0, 1),
        (D("2026-01-21"), 0, 1, 0, 0),
        (D("2026-01-22"), 0, 1, 0, 0),
        (D("2026-01-23"), 0, 1, 0, 0),
        (D("2026-01-24"), 1, 2, 0, 1),
        (D("2026-01-25"), 0, 2, 0, 0),
        (D("2026-01-26"), 0, 2, 0, 0),
        (D("2026-01-27"), 0, 1, 1, 0),
        (D("2026-01-28"), 0, 1, 1, 0),
        (D("2026-01-29"), 0, 1, 1, 0),
        (D("2026-01-30"), 0, 1, 1, 0),
        (D("2026-01-31"), 0, 0, 2, 0),
        (D("2026-02-01"), 1, 1, 2, 1),
        (D("2026-02-02"), 0, 1, 2, 0),
    ]


def test_every_key_runs_from_its_first_failure_to_the_latest_day_in_the_data(built: Built) -> None:
    assert rows(
        built.path,
        """
        select project_id, keypair_name, min(day), max(day), count(*), sum(failures)
        from marts.failure_trend_keypair group by all order by all
        """,
    ) == [
        ("p1", "kp-a", D("2026-01-20"), D("2026-02-02"), 14, 3),
        ("p1", "kp-b", D("2026-01-31"), D("2026-02-02"), 3, 1),
        ("p1", "kp-c", D("2026-01-26"), D("2026-02-02"), 8, 6),
        ("p2", "kp-z", D("2026-01-10"), D("2026-02-02"), 24, 1),
    ]


def test_a_null_error_code_is_reported_as_unknown(built: Built) -> None:
    assert rows(
        built.path,
        """
        select day, failures, failures_7d, failures_prev_7d, servers_affected
        from marts.failure_trend_error_code where error_code = 'UNKNOWN' order by day
        """,
    ) == [(D("2026-02-01"), 1, 1, 0, 1), (D("2026-02-02"), 0, 1, 0, 0)]


def test_server_trend_names_a_server_after_its_latest_failure(built: Built) -> None:
    assert rows(
        built.path,
        """
        select day, server_name, failures, failures_7d, failures_prev_7d, keypairs_involved
        from marts.failure_trend_server
        where server_id = 'srv-1' and day in ('2026-01-20', '2026-01-31', '2026-02-02')
        order by day
        """,
    ) == [
        (D("2026-01-20"), "web-01b", 1, 1, 0, 1),
        (D("2026-01-31"), "web-01b", 1, 1, 1, 1),
        (D("2026-02-02"), "web-01b", 0, 1, 1, 0),
    ]


def test_counts_are_bigint(built: Built) -> None:
    types = rows(
        built.path,
        """
        select distinct data_type from information_schema.columns
        where table_schema = 'marts' and table_name like 'failure_trend_%'
            and column_name in ('failures', 'failures_7d', 'failures_prev_7d',
                'servers_affected', 'keypairs_involved')
        """,
    )
    assert types == [("BIGINT",)]


@pytest.mark.parametrize("time_zone", ["America/Los_Angeles", "Asia/Shanghai"])
def test_days_are_utc_days_in_any_session_time_zone(
    built: Built, tmp_path: Path, time_zone: str
) -> None:
    copy = Path(shutil.copy(built.path, tmp_path / "copy.duckdb"))
    with duckdb.connect(str(copy)) as con:
        con.execute(f"set TimeZone = '{time_zone}'")
        for model in build_order():
            con.execute(f"create or replace {model.kind} {model.relation} as {model.sql}")

    # the staging view is evaluated in the reader's session, the marts were built in another
    sql = """
        select distinct task_id, failed_day from staging.stg_kps__failed_tasks
        where task_id in ('t2', 't3') order by task_id
    """
    assert rows(copy, sql, time_zone) == [("t2", D("2026-02-01")), ("t3", D("2026-01-31"))]
    for table in ("fct_failed_tasks", "failure_trend_keypair", "failure_weekly", "failure_spikes"):
        query = f"select * from marts.{table} order by all"
        assert rows(copy, query) == rows(built.path, query), table


def test_a_spike_is_flagged_against_its_own_28_day_baseline(built: Built) -> None:
    # kp-c: 5 failures on Feb 2 after 1 on Jan 26, over the 13 days p1 has data for
    mean = 1 / 13
    stddev = (1 / 13 - mean * mean) ** 0.5
    spikes = rows(
        built.path,
        """
        select dimension, project_id, key, key_label, day, failures, baseline_days,
            baseline_mean, baseline_stddev, z_score
        from marts.failure_spikes order by dimension, key
        """,
    )
    day = D("2026-02-02")
    assert spikes == [
        ("error_code", "p1", "KPS.009", "KPS.009", day, 5, 13, 0.0, 0.0, 5.0),
        ("keypair", "p1", "kp-c", "kp-c", day, 5, 13, mean, pytest.approx(stddev), 5 - mean),
        ("server", "p1", "srv-4", "batch-01", day, 5, 13, 0.0, 0.0, 5.0),
    ]


def test_hotspots_rank_the_last_7_days_against_the_7_before(built: Built) -> None:
    assert rows(
        built.path,
        """
        select dimension, key_label, rank_in_project, failures, failures_prev, open_tasks,
            trend, median_hours_to_clear
        from marts.failure_hotspots
        where project_id = 'p1' and window_days = 7 order by dimension, rank_in_project
        """,
    ) == [
        ("error_code", "KPS.009", 1, 5, 0, 5, "up", None),
        ("error_code", "KPS.002", 2, 1, 0, 1, "up", None),
        ("error_code", "UNKNOWN", 3, 1, 0, 0, "up", 60.0),
        ("keypair", "kp-c", 1, 5, 1, 5, "up", None),
        ("keypair", "kp-a", 2, 1, 2, 0, "down", 60.0),
        ("keypair", "kp-b", 3, 1, 0, 1, "up", None),
        ("server", "batch-01", 1, 5, 0, 5, "up", None),
        ("server", "web-01b", 2, 1, 1, 1, "flat", None),
        ("server", "web-02", 3, 1, 0, 0, "up", 60.0),
    ]


def test_hotspots_over_30_days_give_the_median_hours_to_clear(built: Built) -> None:
    assert rows(
        built.path,
        """
        select project_id, key, failures, open_tasks, median_hours_to_clear
        from marts.failure_hotspots where dimension = 'keypair' and window_days = 30
        order by project_id, rank_in_project
        """,
    ) == [
        ("p1", "kp-c", 6, 6, None),
        ("p1", "kp-a", 3, 1, 187.0),
        ("p1", "kp-b", 1, 1, None),
        ("p2", "kp-z", 1, 1, None),
    ]


def test_a_project_without_failures_is_in_dim_projects_with_zeros(built: Built) -> None:
    assert rows(
        built.path,
        """
        select project_id, runs, ok_runs, failed_runs, last_run_status, last_complete_run_at,
            tasks_ever, open_tasks, cleared_tasks, failures_last_7d, failures_last_30d,
            median_hours_to_clear
        from marts.dim_projects order by project_id
        """,
    ) == [
        ("p1", 5, 4, 1, "ok", R5, 10, 8, 2, 7, 10, 187.0),
        ("p2", 3, 3, 0, "ok", R2, 1, 1, 0, 0, 1, None),
        ("p3", 5, 5, 0, "ok", R5, 0, 0, 0, 0, 0, None),
    ]
    trends = "select count(*) from marts.failure_trend_keypair where project_id = 'p3'"
    assert rows(built.path, trends) == [(0,)]


def test_weekly_marks_the_last_week_as_partial(built: Built) -> None:
    assert rows(
        built.path,
        """
        select week_start, days_in_data, failures, failures_prev_week, still_open
        from marts.failure_weekly where project_id = 'p1' order by week_start
        """,
    ) == [
        (D("2026-01-19"), 7, 2, 0, 1),
        (D("2026-01-26"), 7, 3, 2, 2),
        (D("2026-02-02"), 1, 5, 3, 5),
    ]


def test_failures_by_operate_type(built: Built) -> None:
    assert rows(
        built.path,
        """
        select project_id, operate_type, failures, open_tasks, failures_last_7d
        from marts.failures_by_operate_type order by all
        """,
    ) == [
        ("p1", "FAILED_REPLACE", 1, 1, 1),
        ("p1", "FAILED_RESET", 8, 7, 5),
        ("p1", "FAILED_UNBIND", 1, 0, 1),
        ("p2", "FAILED_REPLACE", 1, 1, 0),
    ]


# --- data tests ----------------------------------------------------------------------------


def test_the_scenario_passes_every_data_test_and_warns_of_two_current_versions(
    built: Built,
) -> None:
    assert built.result.failed == []
    [warning] = built.result.warnings
    assert warning.name == "assert_one_current_version_per_task"
    assert warning.sample == [{"project_id": "p2", "task_id": "u1", "current_versions": 2}]


def test_a_bad_row_fails_its_data_test_with_a_sample(tmp_path: Path, loaded: Path) -> None:
    raw = scenario()
    raw.run("p1", utc("2026-02-07 12:00"), status="weird")
    raw.version("p1", "t11", utc("2026-02-02 06:00"), (R5, None), operation="FAILED_ROTATE")
    result = transform(raw.write(tmp_path / "kps.duckdb", loaded))

    [failed] = result.failed
    assert (failed.name, failed.severity, failed.failures) == (
        "accepted_values_runs_status",
        "error",
        1,
    )
    assert failed.sample == [{"status": "weird", "occurrences": 1}]
    unexpected = next(t for t in result.warnings if "operate_type" in t.name)
    assert unexpected.sample == [{"operate_type": "FAILED_ROTATE", "occurrences": 1}]


# --- the runner ----------------------------------------------------------------------------


def test_models_are_ordered_by_the_tables_they_read_not_by_name(tmp_path: Path) -> None:
    write_models(
        tmp_path,
        {
            "marts/a_report.sql": "with m as (select * from marts.m_middle) select * from m",
            "marts/m_middle.sql": "select * from staging.z_source, range(3) as r (i)",
            "staging/z_source.sql": "select * from kps_raw.runs",
        },
    )
    order = build_order(tmp_path / "sql")
    assert [(m.relation, m.kind, m.depends_on) for m in order] == [
        ("staging.z_source", "view", ("kps_raw.runs",)),
        ("marts.m_middle", "table", ("staging.z_source",)),
        ("marts.a_report", "table", ("marts.m_middle",)),
    ]


def test_every_model_is_built_after_the_models_it_reads() -> None:
    built_before: set[str] = set()
    for model in build_order():
        assert {t for t in model.depends_on if not t.startswith("kps_raw.")} <= built_before
        built_before.add(model.relation)
    assert {"marts.fct_failed_tasks", "marts.failure_spikes"} <= built_before


def test_models_reading_each_other_are_a_cycle(tmp_path: Path) -> None:
    write_models(
        tmp_path, {"marts/a.sql": "select * from marts.b", "marts/b.sql": "select * from marts.a"}
    )
    with pytest.raises(ModelError, match="cycle"):
        build_order(tmp_path / "sql")


@pytest.mark.parametrize(
    "settings",
    ["fsst", "\n        threads = 1; drop table x: 1", "\n        - threads", "\n        1: 2"],
)
def test_duckdb_settings_that_are_not_names_and_values_name_the_model(
    tmp_path: Path, settings: str
) -> None:
    write_models(
        tmp_path,
        {
            "marts/m.sql": "select 1 as one",
            "marts/_marts.yml": "models:\n  - name: m\n    config:\n"
            f"      duckdb_settings: {settings}\n",
        },
    )
    with pytest.raises(
        ModelError,
        match=r"^model sql/marts/m\.sql: duckdb_settings is a mapping of DuckDB setting names",
    ):
        build_order(tmp_path / "sql")


def test_a_syntax_error_names_the_file_and_leaves_the_last_build(
    built: Built, tmp_path: Path
) -> None:
    sql_dir = copy_sql(tmp_path)
    path = Path(shutil.copy(built.path, tmp_path / "kps.duckdb"))
    broken = sql_dir / "marts" / "failure_trend_server.sql"
    broken.write_text(broken.read_text().replace("from server_days", "form server_days", 1))

    with pytest.raises(ModelError) as error:
        transform(path, sql_dir)

    assert str(error.value).startswith(
        "model sql/marts/failure_trend_server.sql failed: Parser Error: syntax error at or near"
    )
    assert "\n" not in str(error.value)
    query = "select * from marts.failure_trend_server order by all"
    assert rows(path, query) == rows(built.path, query)


def test_a_failing_model_rolls_back_every_model_of_the_build(built: Built, tmp_path: Path) -> None:
    sql_dir = copy_sql(tmp_path)
    path = Path(shutil.copy(built.path, tmp_path / "kps.duckdb"))
    with duckdb.connect(str(path)) as con:
        con.execute("delete from kps_raw.failed_tasks where task_id = 't1'")
    spikes = sql_dir / "marts" / "failure_spikes.sql"  # built after fct_failed_tasks
    spikes.write_text(spikes.read_text().replace("scored.z_score\n", "scored.no_such_column\n"))

    with pytest.raises(
        ModelError, match=r"^model sql/marts/failure_spikes\.sql failed: Binder Error"
    ):
        transform(path, sql_dir)

    assert rows(path, "select count(*) from marts.fct_failed_tasks where task_id = 't1'") == [(1,)]
    # the models made beside the live ones before it are dropped
    relations = (
        "select table_name from duckdb_tables() union all select view_name from duckdb_views()"
    )
    assert [name for (name,) in rows(path, relations) if name.endswith("__next")] == []


def test_an_empty_warehouse_asks_for_a_run_first(tmp_path: Path) -> None:
    duckdb.connect(str(tmp_path / "empty.duckdb")).close()
    with pytest.raises(MissingSourceError) as error:
        transform(tmp_path / "empty.duckdb")
    assert str(error.value) == "no data loaded yet: run `kps-warehouse run` first"

    with pytest.raises(MissingSourceError):
        transform(tmp_path / "missing.duckdb")
    assert not (tmp_path / "missing.duckdb").exists()


def test_a_rebuild_without_new_data_leaves_the_marts_as_they_were(
    built: Built, tmp_path: Path
) -> None:
    path = Path(shutil.copy(built.path, tmp_path / "kps.duckdb"))
    transform(path)
    for model in build_order():
        query = f"select * from {model.relation} order by all"
        assert rows(path, query) == rows(built.path, query), model.relation


@pytest.mark.parametrize("model", build_order(), ids=lambda m: m.name)
def test_every_model_transpiles_to_postgres_and_parses_again(model: Any) -> None:
    [postgres] = sqlglot.transpile(
        model.sql, read="duckdb", write="postgres", unsupported_level=ErrorLevel.RAISE
    )
    sqlglot.parse_one(postgres, read="postgres")


# --- documentation -------------------------------------------------------------------------


def test_every_model_and_column_is_described_in_the_yaml_beside_it(built: Built) -> None:
    documented = {
        model["name"]: model
        for path in SQL_DIR.glob("*/_*.yml")
        for model in yaml.safe_load(path.read_text()).get("models", [])
    }
    for model in build_order():
        doc = documented.get(model.name)
        assert doc and doc.get("description"), model.name
        columns = rows(
            built.path,
            f"""
            select column_name from information_schema.columns
            where table_schema = '{model.schema}' and table_name = '{model.name}'
            order by ordinal_position
            """,
        )
        assert [c["name"] for c in doc["columns"]] == [name for (name,) in columns], model.name
        assert all(c.get("description") for c in doc["columns"]), model.name


# What each question of sql/README.md answers on the scenario, in the order they are asked.
README_ANSWERS = [
    [("p1", "kp-c", 5, 1, "up", 5), ("p1", "kp-a", 1, 2, "down", 0), ("p1", "kp-b", 1, 0, "up", 1)],
    [
        ("p1", "srv-4", "batch-01", 5, "kp-c"),
        ("p1", "srv-1", "web-01b", 1, "kp-b"),
        ("p1", "srv-1", "web-01", 1, "kp-a"),
        ("p1", "srv-5", "batch-02", 1, "kp-c"),
        ("p2", "srv-9", "api-01", 1, "kp-z"),
    ],
    [(D(f"2026-01-{day}"), "p1", "kp-c", 0, 1, 0, 0) for day in range(27, 32)]
    + [
        (D("2026-01-26"), "p1", "kp-c", 1, 1, 0, 1),
        (D("2026-02-01"), "p1", "kp-c", 0, 1, 0, 0),
        (D("2026-02-02"), "p1", "kp-c", 5, 5, 1, 1),
    ],
    [("p1", "KPS.009", 5, 0, 5), ("p1", "UNKNOWN", 1, 0, 1), ("p1", "KPS.002", 1, 0, 1)],
    [
        (D("2026-02-02"), "server", "p1", "batch-01", 5, Decimal("0.00"), Decimal("5.0")),
        (D("2026-02-02"), "error_code", "p1", "KPS.009", 5, Decimal("0.00"), Decimal("5.0")),
        (D("2026-02-02"), "keypair", "p1", "kp-c", 5, Decimal("0.08"), Decimal("4.9")),
    ],
    [
        ("KPS.003", 1, Decimal("314.0"), Decimal("314.0")),
        ("UNKNOWN", 1, Decimal("60.0"), Decimal("60.0")),
    ],
    [("p1", "t3", "kp-b", "web-01b", "KPS.002", R2, 1, True)],
    [("p3", "cn-north-4", 5, "ok", R5)],
    [
        ("p1", D("2026-01-19"), 7, 2, 0, 0.3),
        ("p1", D("2026-01-26"), 7, 3, 2, 0.4),
        ("p1", D("2026-02-02"), 1, 5, 3, 5.0),
        ("p2", D("2026-01-05"), 7, 1, 0, 0.1),
        ("p2", D("2026-01-12"), 7, 0, 1, 0.0),
        ("p2", D("2026-01-19"), 7, 0, 0, 0.0),
        ("p2", D("2026-01-26"), 7, 0, 0, 0.0),
        ("p2", D("2026-02-02"), 1, 0, 0, 0.0),
    ],
    [
        ("p1", "FAILED_RESET", 8, 7, 8, False),
        ("p1", "FAILED_REPLACE", 1, 1, 1, False),
        ("p1", "FAILED_UNBIND", 1, 0, 1, False),
        ("p2", "FAILED_REPLACE", 1, 1, 1, False),
    ],
    [
        ("t3", R2, R3, False, "KPS.002", "Update public key error", "web-01b"),
        ("t3", R5, None, True, "KPS.002", "Update public key error", "web-01b"),
    ],
]


def test_every_query_in_the_sql_readme_answers_its_question_on_the_scenario(built: Built) -> None:
    readme = (SQL_DIR / "README.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", readme, flags=re.DOTALL)
    assert len(queries) == len(README_ANSWERS)
    for number, (query, answer) in enumerate(zip(queries, README_ANSWERS, strict=True), 1):
        # as sets of rows: where a query orders by a count, ties may come in any order
        assert sorted(rows(built.path, query), key=repr) == sorted(answer, key=repr), number


# --- helpers -------------------------------------------------------------------------------


def write_models(root: Path, files: dict[str, str]) -> None:
    for name, sql in files.items():
        path = root / "sql" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql)


def copy_sql(root: Path) -> Path:
    return Path(shutil.copytree(SQL_DIR, root / "sql"))
