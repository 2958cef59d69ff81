"""`kps-warehouse`: argument parsing and output only; the work is in load, transform and report.

Exit status: 0 success, 1 failure, 2 bad usage or configuration, 3 some projects failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kps_warehouse.load import Configuration

OK, FAILED, USAGE, PARTIAL = 0, 1, 2, 3
PROG = "kps-warehouse"


class Output:
    """Where every line goes: plain text for a person, one JSON object per line for a scheduler."""

    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines

    def event(self, event: str, text: str, **fields: Any) -> None:
        if self.json_lines:
            print(json.dumps({"ts": _now(), "event": event, **fields}, default=str), flush=True)
        else:
            print(text, flush=True)

    def error(self, message: str, event: str = "error", **fields: Any) -> None:
        if self.json_lines:
            line = {"ts": _now(), "event": event, "message": message, **fields}
            print(json.dumps(line, default=str), file=sys.stderr, flush=True)
        else:
            print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    def warning(self, message: str) -> None:
        """A setting that may be wrong; the command goes on."""
        self.error(f"warning: {message}", event="warning")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Huawei Cloud KPS failed key-pair tasks, kept as history in DuckDB.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="extract every configured project, load, build the models, run the data tests"
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="json: one JSON object per line (the default when no terminal is attached)",
    )
    run.add_argument("--no-transform", action="store_true", help="load only; skip the models")
    run.add_argument(
        "--project", action="append", dest="projects", metavar="ID", help="only this project"
    )
    run.add_argument(
        "--dry-run", action="store_true", help="page the API and print counts; write nothing"
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the raw tables from the API: loses the history the API no longer has",
    )
    run.add_argument("--yes", action="store_true", help="confirm --full-refresh without asking")

    demo = commands.add_parser(
        "demo", help="run against a simulator started on loopback, then write the report"
    )
    demo.add_argument("--out", type=Path, help="report file (default warehouse/demo-report.html)")

    transform = commands.add_parser(
        "transform", help="rebuild the models and run the data tests only"
    )
    transform.add_argument(
        "--log-format", choices=("text", "json"), help="json: one JSON object per line"
    )

    report = commands.add_parser(
        "report", help="execute the notebook report read-only and write HTML"
    )
    report.add_argument("--out", type=Path, help="HTML file (default warehouse/report.html)")
    report.add_argument(
        "--days", type=_positive_int, help="the last N UTC days up to the latest failure (30)"
    )
    report.add_argument(
        "--project", action="append", dest="projects", metavar="ID", help="limit to a project"
    )

    simulate = commands.add_parser("simulate", help="serve the KPS simulator by hand")
    simulate.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (8765)")
    simulate.add_argument("--seed", type=int, default=7, help="data seed (7)")
    simulate.add_argument("--projects", type=_positive_int, default=3, help="projects (3)")
    simulate.add_argument("--tasks", type=int, default=1200, help="tasks per project (1200)")
    simulate.add_argument("--token", default="sim-token", help="accepted X-Auth-Token")
    simulate.add_argument("--user-name", default="sim-user", help="IAM user (sim-user)")
    simulate.add_argument("--password", default="sim-password", help="its password")
    simulate.add_argument("--domain-name", default="sim-domain", help="its domain (sim-domain)")
    simulate.add_argument("--access-key", default="SIMULATORACCESSKEY", help="accepted AK")
    simulate.add_argument("--secret-key", default="sim-secret-key", help="its SK")
    simulate.add_argument("--latency-ms", type=float, default=0.0, help="delay per request")
    simulate.add_argument("--throttle-rate", type=_rate, default=0.0, help="share of 429s")
    simulate.add_argument("--error-rate", type=_rate, default=0.0, help="share of 500s")
    simulate.add_argument("--drop-rate", type=_rate, default=0.0, help="share of dropped sockets")
    simulate.add_argument("--shift-rate", type=_rate, default=0.0, help="list shifts per page")
    simulate.add_argument("--malformed-rate", type=_rate, default=0.0, help="bad records share")
    simulate.add_argument(
        "--gzip", action="store_true", help="compress answers for clients that accept gzip"
    )

    alerts = commands.add_parser(
        "alerts", help="the alert events found and their deliveries, pending first"
    )
    alerts.add_argument(
        "--dry-run",
        action="store_true",
        help="print the payloads the next run would send (URLs redacted); send and mark nothing",
    )
    alerts.add_argument(
        "--limit",
        type=_positive_int,
        default=50,
        metavar="N",
        help="list at most N deliveries (50)",
    )
    alerts.add_argument(
        "--log-format", choices=("text", "json"), help="json: one JSON object per line"
    )

    status = commands.add_parser(
        "status", help="the last runs per project and the warehouse's freshness"
    )
    status.add_argument(
        "--log-format", choices=("text", "json"), help="json: one JSON object per line"
    )
    status.add_argument(
        "--max-age",
        type=_age,
        metavar="AGE",
        help="exit 1 when the last successful load is older than AGE (e.g. 90m, 6h, 2d)",
    )
    status.add_argument(
        "--max-failures",
        type=_positive_int,
        metavar="N",
        help="exit 1 when a configured project failed its last N runs",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not at least 1")
    return value


def _rate(text: str) -> float:
    """A share from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _age(text: str) -> float:
    """'90m', '6h', '2d' or plain seconds → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 90m, 6h or 2d") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive age")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    json_lines = getattr(args, "log_format", None) == "json" or (
        args.command == "run" and args.log_format is None and not sys.stdout.isatty()
    )
    out = Output(json_lines)
    if json_lines:
        os.environ.setdefault("RUNTIME__LOG_FORMAT", "JSON")
    # Imported late: dlt reads its telemetry and log settings when it is first imported.
    from kps_warehouse.load import RunError, apply_dlt_defaults
    from kps_warehouse.report import ReportError
    from kps_warehouse.source.client import ConfigError

    from .warehouse import WarehouseBusy

    apply_dlt_defaults()
    handlers: dict[str, Callable[[argparse.Namespace, Output], int]] = {
        "run": cmd_run,
        "demo": cmd_demo,
        "transform": cmd_transform,
        "report": cmd_report,
        "simulate": cmd_simulate,
        "status": cmd_status,
        "alerts": cmd_alerts,
    }
    try:
        return handlers[args.command](args, out)
    except ConfigError as exc:
        out.error(f"configuration: {exc}")
        return USAGE
    except (RunError, WarehouseBusy, ReportError) as exc:
        out.error(str(exc))
        if args.debug:
            traceback.print_exc()
        return FAILED
    except KeyboardInterrupt:
        out.error("interrupted")
        return FAILED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, traceback with --debug
        out.error(f"{args.command} failed: {type(exc).__name__}: {_first_line(exc)}")
        if args.debug:
            traceback.print_exc()
        else:
            print(f"{PROG}: run with --debug for the traceback", file=sys.stderr)
        return FAILED


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def cmd_run(args: argparse.Namespace, out: Output) -> int:
    from kps_warehouse import load

    from . import demo

    source_args: dict[str, Any] = {"only": args.projects} if args.projects else {}
    config = load.check_configuration(**source_args)  # before anything is written or requested
    for hint in config.hints:
        out.warning(hint)
    if args.dry_run:
        return dry_run(out, **source_args)
    if load.destination() == "postgres":  # a database: no file, no demo in it
        if args.full_refresh:
            if not confirm_full_refresh(args, out):
                return USAGE
            load.drop_warehouse()
        return run_and_print(args, out, config, None, **source_args)
    warehouse = load.warehouse_path()
    if args.full_refresh or demo.marker(warehouse).exists():
        if not args.full_refresh:
            out.event("demo", f"{warehouse} holds the demo's simulated data: this run replaces it")
        elif not confirm_full_refresh(args, out):
            return USAGE
        load.drop_warehouse(warehouse)
        demo.marker(warehouse).unlink(missing_ok=True)
    return run_and_print(args, out, config, warehouse, **source_args)


def dry_run(out: Output, **source_args: Any) -> int:
    """Pages the API as a run would, prints the counts, writes nothing."""
    from kps_warehouse import load

    progress = Progress(enabled=not out.json_lines and sys.stderr.isatty())
    outcomes = load.dry_run(on_page=progress.page, **source_args)
    progress.done()
    for p in outcomes:
        out.event("project", project_line(p), dry_run=True, **vars(p))
    out.event(
        "summary",
        f"dry run: {sum(p.tasks_seen for p in outcomes)} tasks listed in"
        f" {len(outcomes)} projects; nothing written",
        dry_run=True,
        tasks_seen=sum(p.tasks_seen for p in outcomes),
    )
    return PARTIAL if any(p.status != "ok" for p in outcomes) else OK


def run_and_print(
    args: argparse.Namespace,
    out: Output,
    config: Configuration,
    warehouse: Path | None,
    *,
    notify: bool = True,
    **source_args: Any,
) -> int:
    """One run into `warehouse`, with its progress, its table and its summary. `notify=False`
    leaves the alerts out (the demo's simulated failures are nobody's)."""
    from kps_warehouse import alerts, load

    started = time.monotonic()
    progress = Progress(enabled=not out.json_lines and sys.stderr.isatty())
    alert_settings = alerts.settings() if notify else None
    notifier = alerts.Notifier(alert_settings) if alert_settings else None
    result = load.run(
        warehouse=warehouse,
        transform=not getattr(args, "no_transform", False),
        on_page=progress.page,
        before_publish=notifier,
        **source_args,
    )
    progress.done()
    if credentials_refused(result.projects):
        out.error(
            f"every project ({len(result.projects)}) refused the credentials:"
            f" {result.projects[0].error}; check {config.credentials}",
            projects_failed=len(result.projects),
            exit_code=FAILED,
        )
        return FAILED
    for p in result.projects:
        out.event("project", project_line(p), run_id=result.run_id, **vars(p))
    for p in result.failed:
        rest = (
            "no project loaded"
            if len(result.failed) == len(result.projects)
            else ("other projects loaded")
        )
        out.error(
            f"project {p.project_id}: {p.error} ({p.region}; {rest})",
            project_id=p.project_id,
            region=p.region,
        )
    print_transform(result, out)
    alert_counts = print_alerts(notifier.outcome if notifier else None, out)
    totals = {
        key: sum(getattr(p, key) for p in result.projects)
        for key in ("tasks_seen", "new_versions", "cleared", "rejected")
    }
    ok = len(result.projects) - len(result.failed)
    out.event(
        "summary",
        f"run {result.run_id}: {ok} of {len(result.projects)} projects loaded;"
        f" {totals['tasks_seen']} tasks seen, {totals['new_versions']} new or changed,"
        f" {totals['cleared']} cleared, {totals['rejected']} rejected;"
        f" {time.monotonic() - started:.1f} s ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        + f")\nwarehouse: {result.warehouse}",
        run_id=result.run_id,
        projects_ok=ok,
        projects_failed=len(result.failed),
        **totals,
        seconds=round(time.monotonic() - started, 3),
        phase_seconds=result.seconds,
        warehouse=str(result.warehouse),
        exit_code=result.exit_code,
        **({"alerts": alert_counts} if alert_counts else {}),
    )
    return result.exit_code


def credentials_refused(projects: Sequence[Any]) -> bool:
    """Every project failed, each because the credentials were refused (401, or IAM refusing
    the password): then one line says so, not one per project."""
    return bool(projects) and all(
        p.status != "ok" and (p.error or "").startswith(("401 ", "IAM refused ")) for p in projects
    )


def project_line(p: Any) -> str:
    """One row of the closing table: status, region, project, counts, and any note."""
    note = f"  ({p.note})" if p.note else ""
    return (
        f"{p.status:6} {p.region:15} {p.project_id}  {p.tasks_seen:>7} tasks"
        f" {p.new_versions:>6} new {p.cleared:>6} cleared {p.rejected:>5} rejected{note}"
    )


def confirm_full_refresh(args: argparse.Namespace, out: Output) -> bool:
    warning = (
        "--full-refresh deletes the warehouse and rebuilds it from what the API lists now:"
        " the history of tasks the API no longer lists is lost"
    )
    if args.yes:
        return True
    if not sys.stdin.isatty():
        out.error(f"{warning}; add --yes to confirm")
        return False
    answer = input(f"{warning}. Continue? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


class Progress:
    """Pages and rows read so far, redrawn on one terminal line while a run extracts."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.pages = self.rows = 0
        self.projects: set[str] = set()
        self.started = self.drawn = time.monotonic()
        self._lock = threading.Lock()

    def page(self, project: Any, rows: int) -> None:
        with self._lock:
            self.pages += 1
            self.rows += rows
            self.projects.add(project.project_id)
            now = time.monotonic()
            if self.enabled and now - self.drawn >= 0.2:
                self.drawn = now
                rate = self.rows / max(now - self.started, 1e-9)
                print(
                    f"\rreading: {len(self.projects)} projects, {self.pages} pages,"
                    f" {self.rows:,} rows, {rate:,.0f} rows/s ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )

    def done(self) -> None:
        if self.enabled and self.pages:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def print_transform(result: Any, out: Output) -> None:
    """The models' build and the data tests' verdict."""
    if result.transform_error:
        out.error(result.transform_error)
    if result.transform is None:
        return
    for test in result.transform.warnings:
        out.event(
            "test_warning",
            f"warning: data test {test.name}: {test.failures} rows, e.g. {test.sample[:2]}",
            test=test.name,
            failures=test.failures,
            sample=test.sample,
        )
    for test in result.transform.failed:
        out.error(
            f"data test {test.name} failed: {test.failures} rows, e.g. {test.sample[:3]}",
            test=test.name,
            failures=test.failures,
            sample=test.sample,
        )
    built, kept = len(result.transform.models), len(result.transform.kept)
    tests, passed_before = len(result.transform.tests), len(result.transform.reused)
    out.event(
        "transform",
        f"built {built - kept} models"
        + (f" (kept {kept} whose inputs had not changed)" if kept else "")
        + f" and ran {tests - passed_before} data tests"
        + (f" ({passed_before} more had passed on the same data)" if passed_before else "")
        + f" in {result.transform.seconds:.2f} s",
        models=built,
        kept=kept,
        tests=tests,
        tests_passed_before=passed_before,
        failed=len(result.transform.failed),
        seconds=round(result.transform.seconds, 3),
    )


def print_alerts(outcome: Any, out: Output) -> dict[str, int] | None:
    """The alerts step in one line; its counts go into the run's summary too."""
    if outcome is None:
        return None
    if outcome.error:
        out.error(f"{outcome.error} (the run's data and exit code are unaffected)")
    counts = outcome.counts()
    out.event(
        "alerts",
        f"alerts: {counts['found']} new events found; {counts['sent']} sent,"
        f" {counts['failed']} failed, {counts['pending']} pending",
        **counts,
    )
    return counts


def cmd_transform(args: argparse.Namespace, out: Output) -> int:
    from kps_warehouse import load

    result = load.transform_only()
    print_transform(result, out)
    return result.exit_code


def cmd_report(args: argparse.Namespace, out: Output) -> int:
    from kps_warehouse import load
    from kps_warehouse.report import postgres

    if load.destination() != "postgres":
        return write_report(args, out, load.warehouse_path())
    database = load.postgres_warehouse()
    with tempfile.TemporaryDirectory(prefix="kps-report-") as folder:
        snapshot = Path(folder) / "kps.duckdb"  # the marts of one moment, for the notebook
        session = database.connect("report")
        try:
            postgres.snapshot(session, snapshot)
        finally:
            session.close()
        default = load.DEFAULT_WAREHOUSE.absolute().parent / "report.html"
        return write_report(args, out, snapshot, args.out or default)


def write_report(
    args: argparse.Namespace, out: Output, warehouse: Path, target: Path | None = None
) -> int:
    from kps_warehouse import report

    if args.projects:
        known_projects(warehouse, args.projects)
    target = target or args.out or warehouse.parent / "report.html"
    path = report.render(warehouse, target, days=args.days, projects=args.projects)
    out.event("report", f"report: {path}", report=str(path))
    return OK


def known_projects(warehouse: Path, projects: Sequence[str]) -> None:
    """Raises ConfigError unless the warehouse has runs of every one of `projects`."""
    from kps_warehouse.source.client import ConfigError

    from . import status

    found = status.read(warehouse)
    unknown = sorted(set(projects) - {p.project_id for p in found.projects})
    if unknown and found.found not in ("missing", "empty"):
        raise ConfigError(f"--project {', '.join(unknown)}: no runs of it in {warehouse}")


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    from kps_warehouse import load
    from kps_warehouse.source.client import ConfigError

    from . import demo

    # The warehouse every other command reads, so that `status`, `report` and the DuckDB CLI
    # find the demo's data; a marker beside it lets the first real run replace it.
    warehouse = load.warehouse_path()
    if warehouse.exists() and not demo.marker(warehouse).exists():
        raise ConfigError(
            f"{warehouse} holds real runs, and the demo replaces only its own warehouse: set"
            " DESTINATION__DUCKDB__CREDENTIALS to another file to run the demo there"
        )
    load.drop_warehouse(warehouse)
    demo.marker(warehouse).touch()
    with demo.simulator() as sim:
        out.event("demo", f"simulator on {sim.url} with {len(sim.projects())} projects")
        source_args = demo.source_args(sim)
        config = load.check_configuration(**source_args)
        code = run_and_print(args, out, config, warehouse, notify=False, **source_args)
        demo.change_the_api(sim)
        code = max(code, run_and_print(args, out, config, warehouse, notify=False, **source_args))
    if code not in (OK, PARTIAL):
        return code
    from kps_warehouse import report

    target = args.out or warehouse.parent / "demo-report.html"
    report_path = report.render(warehouse, target)
    for line in demo.summary(warehouse):
        out.event("summary", line)
    out.event("demo", f"warehouse: {warehouse}\nreport:    {report_path}")
    steps = demo.next_steps(shown(warehouse), beside_python(PROG), beside_python("duckdb"))
    out.event("demo", steps)
    return code


def shown(path: Path) -> str:
    """`path` as a person would type it here: relative to the working directory when inside."""
    path = path.absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def beside_python(command: str) -> str:
    """`command` as installed in this environment (`make` installs kps-warehouse and the DuckDB
    CLI in .venv/bin), else as found on PATH."""
    beside = Path(sys.executable).parent / command
    return shown(beside) if beside.exists() else command


def cmd_simulate(args: argparse.Namespace, out: Output) -> int:
    from kps_simulator import Simulator

    sim = Simulator(token=args.token, seed=args.seed)
    regions = ("cn-north-4", "ap-southeast-1")
    for i in range(args.projects):
        sim.add_project(region=regions[i % len(regions)], tasks=args.tasks)
    sim.configure(
        latency_ms=args.latency_ms,
        throttle_rate=args.throttle_rate,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        shift_rate=args.shift_rate,
        malformed_rate=args.malformed_rate,
        gzip=args.gzip,
    )
    sim.add_iam_user(args.user_name, args.password, args.domain_name)
    sim.add_access_key(args.access_key, args.secret_key)
    try:
        sim.start(args.port)
    except (OSError, OverflowError) as exc:  # in use, not ours to take, or not a port at all
        why = (getattr(exc, "strerror", None) or str(exc)).rstrip(".")
        out.error(f"simulate: cannot serve on 127.0.0.1:{args.port}: {why}; choose another --port")
        return USAGE
    by_region: dict[str, list[str]] = {}
    for project_id, region in sim.projects().items():
        by_region.setdefault(region, []).append(project_id)
    # the simulator's own made-up credentials, printed so that each kind can be tried
    settings = {
        "": {"ENDPOINT": sim.endpoint, "PROJECTS": json.dumps(by_region)},
        "and a token": {"CREDENTIALS__AUTH_TOKEN": args.token},
        "or an IAM user's password (unset the token)": {
            "CREDENTIALS__IAM_ENDPOINT": sim.url,
            "CREDENTIALS__USER_NAME": args.user_name,
            "CREDENTIALS__PASSWORD": args.password,
            "CREDENTIALS__DOMAIN_NAME": args.domain_name,
        },
        "or AK/SK (unset the token and the password)": {
            "CREDENTIALS__ACCESS_KEY": args.access_key,
            "CREDENTIALS__SECRET_KEY": args.secret_key,
        },
    }
    out.event("simulate", f"KPS simulator on {sim.url} (Ctrl-C stops it). Point a run at it:")
    for heading, variables in settings.items():
        if heading:
            out.event("simulate", heading + ":")
        for name, value in variables.items():
            out.event("simulate", f"  export SOURCES__KPS__{name}='{value}'")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()
    return OK


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    from kps_warehouse import load

    from . import demo, status

    if load.destination() == "postgres":
        target = load.postgres_warehouse()
        session = target.connect("status")
        try:
            location = f"postgres {target.location}"
            report = status.read_postgres(session, location, load.configured_project_ids())
        finally:
            session.close()
    else:
        warehouse = load.warehouse_path()
        # The demo's projects are not configured anywhere, yet are all its warehouse holds.
        configured = None if demo.marker(warehouse).exists() else load.configured_project_ids()
        report = status.read(warehouse, configured)
    for line, fields in report.lines():
        out.event("status", line, **fields)
    code = OK
    if args.max_age is not None and report.age_seconds() > args.max_age:
        age = report.age_seconds()
        out.error(
            f"warehouse {report.warehouse} is stale: last successful load "
            + (f"{age / 3600:.1f} h ago" if age != float("inf") else "never")
            + f" (max age {args.max_age / 3600:g} h)",
            age_seconds=None if age == float("inf") else round(age),
        )
        code = FAILED
    for p in report.failing(args.max_failures) if args.max_failures else ():
        out.error(
            f"project {p.project_id} failed its last {p.failures_in_a_row} runs:"
            f" {p.last_error} ({p.region}; max failures {args.max_failures})",
            project_id=p.project_id,
            failures_in_a_row=p.failures_in_a_row,
        )
        code = FAILED
    return code


def cmd_alerts(args: argparse.Namespace, out: Output) -> int:
    from kps_warehouse import alerts
    from kps_warehouse.load import warehouse_path

    warehouse = warehouse_path()
    if args.dry_run:
        config = alerts.settings()
        if config is None:
            out.error("configuration: no receivers in kps_warehouse.alerts.receivers")
            return USAGE
        planned = alerts.preview(warehouse, config)
        for receiver, message in planned:
            out.event(
                "alert_payload",
                f"{receiver.id} ({receiver.format}): POST <url redacted>,"
                f" {len(message.keys)} events{' (signed when sent)' if receiver.secret else ''}\n"
                + json.dumps(message.body, indent=2, ensure_ascii=False),
                receiver=receiver.id,
                format=receiver.format,
                keys=list(message.keys),
                body=message.body,
            )
        out.event(
            "alerts",
            f"dry run: {len(planned)} messages would be sent; nothing sent or marked",
            dry_run=True,
            messages=len(planned),
        )
        return OK
    rows = alerts.listing(warehouse, args.limit)
    for row in rows:
        tried = f"  ({row['attempts']} attempts: {row['last_error']})" if row["last_error"] else ""
        out.event(
            "alert",
            f"{row['status']:8} {row['receiver'] or '-':16} {row['key']}{tried}\n"
            f"{'':8} {row['summary']}",
            **row,
        )
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    out.event(
        "alerts",
        f"{len(rows)} deliveries listed" + (f": {tally}" if tally else "") + f" ({warehouse})",
        listed=len(rows),
        **by_status,
    )
    return OK


if __name__ == "__main__":
    sys.exit(main())
