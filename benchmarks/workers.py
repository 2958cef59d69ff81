"""The workloads, each run inside a worker process (`run.py --worker SPEC`); heavy imports stay
inside them."""

from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import OVERLAPPED_PHASE, PAGE_SIZE, REGION


def work_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """This project: `kps_warehouse.load.run` without the models into `spec["warehouse"]`, or
    into the PostgreSQL database `spec["postgres"]` (a URL)."""
    import os

    import duckdb
    import psycopg2

    from kps_warehouse import load
    from kps_warehouse import source as kps_source
    from kps_warehouse.ops import warehouse
    from kps_warehouse.source import KpsCredentials, spill

    # Where the time goes: wrappers around the phases that happen outside dlt's own steps.
    phases: dict[str, float] = {}
    _time_calls(kps_source, "read_all", phases, "read")
    _time_calls(spill.TaskSpill, "flush", phases, OVERLAPPED_PHASE)
    _time_calls(warehouse.Warehouse, "publish", phases, "publish")

    args: dict[str, Any] = {
        "endpoint": f"http://127.0.0.1:{spec['port']}/{{region}}",
        "projects": {REGION: spec["projects"]},
        "project_ids": None,
        "region": None,
        "credentials": KpsCredentials(auth_token=spec["token"]),
    }
    postgres = spec.get("postgres")
    if postgres:
        os.environ["KPS_WAREHOUSE__DESTINATION"] = "postgres"
        os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = postgres
    path = None if postgres else Path(spec["warehouse"])
    transform = spec.get("transform", False)
    started = time.perf_counter()
    result = load.run(path, transform=transform, **args)
    seconds = time.perf_counter() - started
    if result.transform is not None:
        phases["models"] = result.transform.seconds

    failed = [f"{p.project_id}: {p.error}" for p in result.failed]
    if failed:
        return {"error": f"{len(failed)} projects failed, first: {failed[0]}"}
    if result.transform_error:
        return {"error": f"models failed: {result.transform_error}"}
    trace = _dlt_steps()
    count = (
        "select count(*), count(*) filter (where _dlt_valid_to is null) from kps_raw.failed_tasks"
    )
    if path is None:
        with psycopg2.connect(postgres) as con, con.cursor() as cursor:
            cursor.execute(count)
            table_rows, current = cursor.fetchone()
        con.close()
    else:
        with duckdb.connect(str(path), read_only=True) as con:
            table_rows, current = con.execute(count).fetchone()
    return {
        "rows": sum(p.tasks_seen for p in result.projects),
        "seconds": seconds,
        "details": {
            "phases": {**phases, **trace},
            "table_rows": table_rows,
            "current_rows": current,
            "file_mb": path.stat().st_size / 2**20 if path else None,
            "models_kept": len(result.transform.kept) if result.transform else None,
            "models_updated": len(result.transform.updated) if result.transform else None,
            "models_failed": [t.name for t in result.transform.failed] if result.transform else [],
        },
    }


def work_rest_api(spec: dict[str, Any]) -> dict[str, Any]:
    """dlt's declarative rest_api source configured the obvious way, duckdb with defaults."""
    import dlt
    import duckdb
    from dlt.sources.rest_api import rest_api_source

    config: dict[str, Any] = {
        "client": {
            "base_url": f"http://127.0.0.1:{spec['port']}/{REGION}/v3/",
            "auth": {
                "type": "api_key",
                "name": "X-Auth-Token",
                "api_key": spec["token"],
                "location": "header",
            },
            "paginator": {
                "type": "offset",
                "limit": PAGE_SIZE,
                "offset_param": "offset",
                "limit_param": "limit",
                "total_path": None,  # `total` is capped at 1000 by the API: useless for paging
                "stop_after_empty_page": True,
            },
        },
        "resource_defaults": {"endpoint": {"data_selector": "tasks"}},
        "resources": [
            {
                "name": f"failed_tasks_{i}",
                "table_name": "failed_tasks",
                "endpoint": {"path": f"{project_id}/failed-tasks"},
            }
            for i, project_id in enumerate(spec["projects"])
        ],
    }
    path = Path(spec["warehouse"])
    started = time.perf_counter()
    pipe = dlt.pipeline(
        pipeline_name="bench_rest_api",
        destination=dlt.destinations.duckdb(str(path)),
        dataset_name="rest_api",
        pipelines_dir=str(path.parent / ".dlt"),
    )
    pipe.run(rest_api_source(config))
    seconds = time.perf_counter() - started
    with duckdb.connect(str(path), read_only=True) as con:
        (rows,) = con.execute("select count(*) from rest_api.failed_tasks").fetchone()
    return {"rows": rows, "seconds": seconds, "details": {"phases": _dlt_steps()}}


def work_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The floor: page bytes fetched with bare urllib3, the HTTP library our client uses (same
    concurrency, same paging rule), written to files as they are, then one DuckDB `read_json`
    over them into a table."""
    import duckdb
    import urllib3

    pages_dir = Path(spec["warehouse"]).parent / "pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{spec['port']}/{REGION}/v3/{{}}/failed-tasks"
    headers = {"X-Auth-Token": spec["token"]}
    http = urllib3.PoolManager(maxsize=spec["concurrency"])

    def fetch(index: int, project_id: str) -> None:
        offset = 0
        while True:
            fields = {"limit": PAGE_SIZE, "offset": offset}
            response = http.request("GET", url.format(project_id), fields=fields, headers=headers)
            if response.status != 200:
                raise RuntimeError(f"{project_id} at offset {offset}: HTTP {response.status}")
            body = response.data
            # Offsets first in the name, so DuckDB samples full pages before the empty ones.
            (pages_dir / f"{offset:06d}_{index:05d}.json").write_bytes(body)
            # Counting a key in the raw bytes says whether the page was full, without parsing.
            items = body.count(b'"task_id"')
            if items < PAGE_SIZE:
                return
            offset += items

    started = time.perf_counter()
    with ThreadPoolExecutor(spec["concurrency"]) as pool:
        for future in [pool.submit(fetch, i, p) for i, p in enumerate(spec["projects"])]:
            future.result()
    fetched = time.perf_counter()
    with duckdb.connect(spec["warehouse"]) as con:
        con.execute(
            "create table failed_tasks as"
            " select unnest(tasks, recursive := true)"
            f" from read_json('{pages_dir}/*.json', format = 'auto')"
        )
        (rows,) = con.execute("select count(*) from failed_tasks").fetchone()
    seconds = time.perf_counter() - started
    shutil.rmtree(pages_dir)
    return {
        "rows": rows,
        "seconds": seconds,
        "details": {
            "phases": {"fetch": fetched - started, "read_json": seconds - fetched + started}
        },
    }


def work_sequential(spec: dict[str, Any]) -> dict[str, Any]:
    """The naive client: one request at a time, project after project, page after page."""
    import requests

    url = f"http://127.0.0.1:{spec['port']}/{REGION}/v3/{{}}/failed-tasks"
    headers = {"X-Auth-Token": spec["token"]}
    session = requests.Session()
    rows = 0
    started = time.perf_counter()
    for project_id in spec["projects"]:
        offset = 0
        while True:
            params = {"limit": PAGE_SIZE, "offset": offset}
            response = session.get(url.format(project_id), params=params, headers=headers)
            response.raise_for_status()
            tasks = response.json()["tasks"]
            rows += len(tasks)
            if len(tasks) < PAGE_SIZE:
                break
            offset += len(tasks)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def work_transform(spec: dict[str, Any]) -> dict[str, Any]:
    """`kps-warehouse transform`: every model rebuilt in the writer's copy, the data tests run,
    the copy published."""
    import duckdb

    from kps_warehouse import load

    started = time.perf_counter()
    result = load.transform_only(Path(spec["warehouse"]))
    seconds = time.perf_counter() - started
    if result.transform is None:
        return {"error": result.transform_error or "no models built"}
    with duckdb.connect(spec["warehouse"], read_only=True) as con:
        (rows,) = con.execute("select count(*) from marts.fct_failed_tasks").fetchone()
    details = {
        "models": len(result.transform.models),
        "tests": len(result.transform.tests),
        "failed_tests": [f"{t.name} ({t.failures})" for t in result.transform.failed],
        "build_seconds": result.transform.seconds,
    }
    return {"rows": rows, "seconds": seconds, "details": details}


def work_report(spec: dict[str, Any]) -> dict[str, Any]:
    """The report rendered over the warehouse: the notebook executed, HTML written."""
    from kps_warehouse.report import notebook as report

    out = Path(spec["warehouse"]).with_name("report.html")
    started = time.perf_counter()
    report.render(Path(spec["warehouse"]), out)
    seconds = time.perf_counter() - started
    return {"rows": None, "seconds": seconds, "details": {"html_kb": out.stat().st_size / 1024}}


WORKLOADS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ours": work_ours,
    "rest_api": work_rest_api,
    "floor": work_floor,
    "sequential": work_sequential,
    "transform": work_transform,
    "report": work_report,
}


def _time_calls(owner: Any, name: str, totals: dict[str, float], key: str) -> None:
    """Wraps owner.name so that its wall time adds up in totals[key] (instrumentation only)."""
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - started

    setattr(owner, name, timed)


def _dlt_steps() -> dict[str, float]:
    """Seconds of dlt's extract, normalize and load steps of the last run in this process."""
    import dlt

    trace = dlt.current.pipeline().last_trace
    return {
        f"dlt {step.step}": (step.finished_at - step.started_at).total_seconds()
        for step in trace.steps
        if step.step in ("extract", "normalize", "load") and step.finished_at
    }


def worker_main(spec_file: str) -> int:
    """Entry point of a worker process: runs one workload and writes its result as JSON."""
    spec = json.loads(Path(spec_file).read_text())
    try:
        result = WORKLOADS[spec["kind"]](spec)
    except Exception as exc:  # noqa: BLE001 - any failure is one row of the table, not a crash
        traceback.print_exc()
        lines = str(exc).strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]}
    Path(spec["out"]).write_text(json.dumps(result, default=str))
    return 1 if "error" in result else 0
