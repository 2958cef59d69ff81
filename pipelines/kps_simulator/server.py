"""The stand-in KPS `GET /v3/{project_id}/failed-tasks` (plus a tiny IAM), over real HTTP.

One ThreadingHTTPServer on 127.0.0.1 serves every region: the path prefix `/{region}` stands in
for the per-region host `kms.{region}.myhuaweicloud.com`. Faults are decided per request from an
RNG seeded by (seed, path, how many times that path was asked), so a run replays the same faults
whatever the interleaving of threads.
"""

from __future__ import annotations

import bisect
import copy
import hmac
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from gzip import compress as gzip_compress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from kps_simulator.data import (
    DAY_MS,
    Pool,
    generate_pool,
    generate_project_id,
    generate_tasks,
)
from kps_warehouse.source.auth import SDK_DATE_FORMAT, SIGNING_ALGORITHM, sign

LIMIT_RANGE = (1, 1000)
OFFSET_RANGE = (0, 100_000)
DEFAULT_LIMIT = 1000
FIXED_CLOCK_TICK_MS = 1000  # how far a fixed clock moves each time tasks are added later
JSON_TYPE = "application/json;charset=UTF-8"
BAD_BODIES = frozenset(
    {
        "html",
        "truncated",
        "not_json",
        "tasks_missing",
        "tasks_not_list",
        "total_missing",
        "total_negative",
        "oversized_page",
        "duplicate_ids",
        "not_utf8",
    }
)
# task_time as a JSON number is valid per the project's rules; the others are not.
MALFORMATIONS = ("missing_task_id", "task_time_not_a_time", "server_id_number", "task_time_number")
MAX_SIGNING_SKEW = timedelta(minutes=15)
AK_MAX_FAILURES = 5  # failed signatures in a row that lock an AK
AK_LOCK_SECONDS = 300
ANY_REGION = "*"  # scope of the constructor's token: every project, every region
UNSCOPED = ""  # scope of an IAM token asked for without a project

FAILED_TASKS_PATH = re.compile(r"(?:/(?P<region>[^/]+))?/v3/(?P<project>[^/]+)/failed-tasks")
IAM_TOKENS_PATH = re.compile(r"(?:/[^/]+)?/v3/auth/tokens")
IAM_PROJECTS_PATH = re.compile(r"(?:/[^/]+)?/v3/auth/projects")
DIGITS = re.compile(r"[0-9]+")


class ApiError(Exception):
    """An error answer: HTTP status plus the `{error_code, error_msg}` body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(
        404,
        "APIGW.0101",
        "The API does not exist or has not been published in the environment.",
    )


def project_unavailable() -> ApiError:
    return ApiError(403, "APIGW.0310", "The project is unavailable.")


def bad_credentials(why: str) -> ApiError:
    return ApiError(401, "APIGW.0301", f"Incorrect IAM authentication information: {why}")


def parameter_error() -> ApiError:
    return ApiError(400, "KPS.0002", "parameter error")


@dataclass
class Faults:
    """The fault switches of `Simulator.configure`; rates are per-request probabilities."""

    latency_ms: float = 0
    throttle_rate: float = 0
    error_rate: float = 0
    drop_rate: float = 0
    shift_rate: float = 0
    malformed_rate: float = 0
    bad_body: str | None = None
    retry_after: float | None = 0
    gzip: bool = False


@dataclass
class Fate:
    """What happens to one page request, drawn up front so the draws stay in a fixed order."""

    drop: bool
    throttle: bool
    error: bool
    shift: bool
    rng: random.Random  # further draws: which task shifts, which tasks are malformed


@dataclass
class Project:
    """One project's region and its current failed tasks, kept in served order."""

    region: str
    rng: random.Random
    pool: Pool
    tasks: list[dict] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    # Each task as JSON bytes, in step with `tasks`: a plain page costs a join instead of a
    # deep copy and an encode, so the simulator is not what limits a benchmark's client.
    encoded: list[bytes] = field(default_factory=list)


@dataclass
class Reply:
    """A finished answer; `drop` closes the socket instead, `cut_at` truncates the body."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    cut_at: int | None = None


def _gzipped(reply: Reply) -> Reply:
    """The reply compressed; a body cut off midway is cut at the same share of its bytes."""
    body = gzip_compress(reply.body, compresslevel=1)
    cut_at = None if reply.cut_at is None else len(body) * reply.cut_at // len(reply.body)
    headers = {**reply.headers, "Content-Encoding": "gzip"}
    return replace(reply, body=body, headers=headers, cut_at=cut_at)


def served_order(task: dict) -> tuple[int, str]:
    """Newest task_time first, then task_id; odd hand-made tasks sort last instead of failing."""
    try:
        time_ms = int(task["task_time"])
    except (KeyError, TypeError, ValueError):
        time_ms = 0
    return -time_ms, str(task.get("task_id", ""))


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Reply(status, body, headers=headers or {})


def error_reply(error: ApiError) -> Reply:
    payload = {"error_code": error.code, "error_msg": error.message}
    return json_reply(error.status, payload, error.headers)


class Simulator:
    """A faithful stand-in for KPS `failed-tasks` on loopback, with seeded data and faults."""

    def __init__(
        self,
        *,
        token: str = "sim-token",
        seed: int = 7,
        total_cap: int | None = 1000,
        now_ms: int | None = None,
    ):
        self.token = token
        self.seed = seed
        self.total_cap = total_cap
        self.iam_users: dict[tuple[str, str], str] = {}  # (domain, user name) -> password
        self.requests: list[tuple[str, str, int]] = []
        self.gzipped = 0  # answers sent compressed (see `configure`)
        # When each logged request arrived and was answered (time.monotonic), in the same order.
        self.request_times: list[tuple[float, float]] = []
        self.peak_concurrency = 0
        self._fixed_clock = now_ms is not None
        self._now_ms = now_ms if now_ms is not None else _wall_ms()
        self._rng = random.Random(seed)  # only for generated project ids
        self._lock = threading.Lock()
        self._projects: dict[str, Project] = {}
        self._tokens: dict[str, str] = {token: ANY_REGION}  # token -> region it works in
        self._expired: set[str] = set()
        self._access_keys: dict[str, str] = {}
        self._ak_failures: dict[str, tuple[int, float]] = {}  # AK -> (failures, locked until)
        self._faults = Faults()
        self._attempts: dict[str, int] = {}
        self._in_flight = 0
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self, port: int = 0) -> Simulator:
        """Serve on 127.0.0.1:port (0 picks a free port) from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._server = _HttpServer(("127.0.0.1", port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits at most this long
            name="kps-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL; also the IAM endpoint."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """The KPS endpoint template, as the pipeline is configured with it."""
        return self.url + "/{region}"

    @property
    def now_ms(self) -> int:
        """The simulated clock: generated history ends here; tasks added later come after it."""
        with self._lock:
            return self._now_ms

    # state

    def add_project(
        self,
        project_id: str | None = None,
        *,
        region: str = "cn-north-4",
        tasks: int | list[dict] = 0,
    ) -> str:
        """Add a project (its id generated from the seed when None) with a history of tasks."""
        with self._lock:
            project_id = project_id or generate_project_id(self._rng)
            if project_id in self._projects:
                raise ValueError(f"project {project_id} already exists")
            # Each project has its own RNG, so its data does not depend on the order of calls.
            rng = random.Random(f"{self.seed}:{project_id}")
            project = Project(region, rng, generate_pool(rng))
            self._projects[project_id] = project
            if isinstance(tasks, int):
                tasks = generate_tasks(rng, tasks, now_ms=self._now_ms, pool=project.pool)
            _insert(project, tasks)
        return project_id

    def add_tasks(self, project_id: str, n: int | list[dict]) -> list[dict]:
        """Add n new tasks (dated after the clock, which moves on) or the given ones."""
        with self._lock:
            project = self._project(project_id)
            tasks = self._new_tasks(project, n) if isinstance(n, int) else n
            return copy.deepcopy(_insert(project, tasks))

    def delete_tasks(self, project_id: str, n: int = 1, ids: list[str] | None = None) -> list[dict]:
        """Remove the tasks with these ids, or else n random ones (all, if fewer remain)."""
        with self._lock:
            project = self._project(project_id)
            if ids is None:
                listed = sorted(project.ids)
                ids = project.rng.sample(listed, min(n, len(listed)))
            return _remove(project, ids)

    def tasks(self, project_id: str) -> list[dict]:
        """A copy of the project's current tasks, in served order."""
        with self._lock:
            return copy.deepcopy(self._project(project_id).tasks)

    def projects(self) -> dict[str, str]:
        """project_id -> region."""
        with self._lock:
            return {pid: project.region for pid, project in self._projects.items()}

    # auth

    def add_iam_user(self, name: str, password: str, domain: str) -> None:
        """An IAM user who can exchange a password for a token at POST /v3/auth/tokens."""
        with self._lock:
            self.iam_users[(domain, name)] = password

    def add_token(self, token: str) -> None:
        """Another token the gateway accepts for every project, like the constructor's."""
        with self._lock:
            self._tokens[token] = ANY_REGION

    def add_access_key(self, access_key: str, secret_key: str) -> None:
        """An AK/SK pair whose SDK-HMAC-SHA256 signatures the gateway accepts."""
        with self._lock:
            self._access_keys[access_key] = secret_key

    def expire_token(self, token: str | None = None) -> None:
        """Make this token (default: every valid token) answer 401 APIGW.0307."""
        with self._lock:
            expiring = [token] if token is not None else list(self._tokens)
            for each in expiring:
                self._tokens.pop(each, None)
                self._expired.add(each)

    # faults and observability

    def configure(
        self,
        *,
        latency_ms: float = 0,
        throttle_rate: float = 0,
        error_rate: float = 0,
        drop_rate: float = 0,
        shift_rate: float = 0,
        malformed_rate: float = 0,
        bad_body: str | None = None,
        retry_after: float | None = 0,
        gzip: bool = False,
    ) -> None:
        """Replace every fault switch (unnamed ones go back to off) and replay from the seed.

        `gzip` is not a fault: answers are compressed for clients that accept it, as gateways
        in front of an API may do."""
        rates = (throttle_rate, error_rate, drop_rate, shift_rate, malformed_rate)
        if not all(0 <= rate <= 1 for rate in rates) or latency_ms < 0:
            raise ValueError("rates must be within [0, 1] and latency_ms >= 0")
        if bad_body is not None and bad_body not in BAD_BODIES:
            raise ValueError(f"bad_body must be one of {sorted(BAD_BODIES)}")
        faults = Faults(
            latency_ms,
            throttle_rate,
            error_rate,
            drop_rate,
            shift_rate,
            malformed_rate,
            bad_body,
            retry_after,
            gzip,
        )
        with self._lock:
            self._faults = faults
            self._attempts.clear()  # the same requests now meet the same faults again

    def reset_counters(self) -> None:
        """Forget the request log and the concurrency peak."""
        with self._lock:
            self.requests.clear()
            self.request_times.clear()
            self.gzipped = 0
            self.peak_concurrency = self._in_flight

    # request handling, called from the server's threads

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one request; faults and errors become replies, never exceptions."""
        arrived = self._enter()
        reply = Reply(0)
        try:
            reply = self._route(method, target, headers, body)
        except ApiError as error:
            reply = error_reply(error)
        finally:
            self._leave(method, target, 0 if reply.drop else reply.status, arrived)
        if self._faults.gzip and "gzip" in headers.get("accept-encoding", "") and reply.body:
            reply = _gzipped(reply)
            with self._lock:
                self.gzipped += 1
        return reply

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        if (match := FAILED_TASKS_PATH.fullmatch(parts.path)) and method == "GET":
            return self._failed_tasks(match["region"], match["project"], parts, headers)
        if IAM_TOKENS_PATH.fullmatch(parts.path) and method == "POST":
            return self._issue_token(body)
        if IAM_PROJECTS_PATH.fullmatch(parts.path) and method == "GET":
            return self._list_projects(headers)
        raise not_found()

    def _failed_tasks(
        self, region: str | None, project_id: str, parts: SplitResult, headers: dict[str, str]
    ) -> Reply:
        faults = self._faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        scope = self._token_scope(headers, parts.geturl())
        project_region = self._project_region(project_id, region)
        if scope not in (ANY_REGION, project_region):
            raise ApiError(401, "APIGW.0307", "The token must be updated.")
        limit, offset = _paging(parts.query)
        fate = self._fate(faults, parts.path + "?" + parts.query)
        if fate.drop:
            return Reply(0, drop=True)
        if fate.throttle:
            raise _throttled(faults.retry_after)
        if fate.error:
            raise ApiError(500, "KPS.0004", "Response error")
        return self._page(project_id, limit, offset, fate, faults)

    def _page(self, project_id: str, limit: int, offset: int, fate: Fate, faults: Faults) -> Reply:
        with self._lock:
            project = self._projects[project_id]
            if fate.shift:
                self._shift(project, fate.rng)
            total, now_ms = len(project.tasks), self._now_ms
            capped = total if self.total_cap is None else min(total, self.total_cap)
            if not faults.malformed_rate and faults.bad_body is None:
                return Reply(200, _plain_page(project, capped, offset, limit))
            page = copy.deepcopy(project.tasks[offset : offset + limit + 1])
        spare = page[limit:]  # one task past the page, for the oversized_page body
        page = [_maybe_malformed(task, fate.rng, faults.malformed_rate) for task in page[:limit]]
        if faults.bad_body is None:
            return json_reply(200, {"total": capped, "tasks": page})
        return _bad_body(faults.bad_body, capped, page, spare, limit, fate, now_ms)

    def _shift(self, project: Project, rng: random.Random) -> None:
        """The list moves between pages: one task appears or one disappears."""
        if project.ids and rng.random() < 0.5:
            _remove(project, [rng.choice(sorted(project.ids))])
        else:
            # From the project's stream, not the request's: configure() replays request RNGs,
            # which would bring back a task_id that is already listed.
            _insert(project, self._new_tasks(project, 1))

    def _issue_token(self, body: bytes) -> Reply:
        user, password, domain, project_id = _password_auth(body)
        with self._lock:
            if self.iam_users.get((domain, user)) != password:
                raise bad_credentials("the user name or password is incorrect.")
            if project_id is not None and project_id not in self._projects:
                raise bad_credentials(f"project {project_id} does not exist.")
            project = self._projects.get(project_id) if project_id else None
            token = f"sim-iam-{uuid.uuid4().hex}"
            self._tokens[token] = project.region if project else UNSCOPED
        expires = datetime.now(UTC) + timedelta(hours=24)
        payload: dict[str, Any] = {
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "methods": ["password"],
            "user": {"name": user, "domain": {"name": domain}},
        }
        if project is not None:
            payload["project"] = {"id": project_id, "name": project.region}
        return json_reply(201, {"token": payload}, {"X-Subject-Token": token})

    def _list_projects(self, headers: dict[str, str]) -> Reply:
        self._token_scope(headers)  # any valid token may list projects, scoped or not
        listing = [
            {"id": pid, "name": region, "enabled": True} for pid, region in self.projects().items()
        ]
        return json_reply(200, {"projects": listing})

    # helpers that read or change state; callers hold no lock unless said

    def _token_scope(self, headers: dict[str, str], target: str = "") -> str:
        authorization = headers.get("authorization", "")
        if authorization.startswith(SIGNING_ALGORITHM + " "):
            return self._verify_signature(authorization, target, headers)
        token = headers.get("x-auth-token")
        if not token:
            raise bad_credentials("the X-Auth-Token header is missing.")
        with self._lock:
            if token in self._expired:
                raise ApiError(401, "APIGW.0307", "The token has expired.")
            scope = self._tokens.get(token)
        if scope is None:
            raise bad_credentials("decrypt token fail.")
        return scope

    def _verify_signature(self, authorization: str, target: str, headers: dict[str, str]) -> str:
        """Checks an SDK-HMAC-SHA256 signature as the gateway does, locking an AK for five
        minutes after five failures in a row."""
        fields = dict(
            part.strip().partition("=")[::2]
            for part in authorization.removeprefix(SIGNING_ALGORITHM).split(",")
        )
        access_key = fields.get("Access", "")
        with self._lock:
            secret_key = self._access_keys.get(access_key)
            failures, locked_until = self._ak_failures.get(access_key, (0, 0.0))
        if time.monotonic() < locked_until:
            raise bad_credentials("the access key is locked after 5 failed signatures.")
        try:
            signed_at = datetime.strptime(headers.get("x-sdk-date", ""), SDK_DATE_FORMAT)
            signed_at = signed_at.replace(tzinfo=UTC)
        except ValueError:
            signed_at = None
        names = fields.get("SignedHeaders", "").split(";")
        expected = ""
        if secret_key is not None and signed_at is not None:
            signed_headers = {
                n: headers.get(n, "") for n in names if n not in ("host", "x-sdk-date")
            }
            url = f"http://{headers.get('host', '')}{target}"
            expected = sign("GET", url, signed_headers, access_key, secret_key, signed_at)
        fresh = signed_at is not None and abs(datetime.now(UTC) - signed_at) <= MAX_SIGNING_SKEW
        if not (
            fresh and expected and hmac.compare_digest(expected["Authorization"], authorization)
        ):
            with self._lock:
                failures += 1
                lock = time.monotonic() + AK_LOCK_SECONDS if failures >= AK_MAX_FAILURES else 0.0
                self._ak_failures[access_key] = (0 if lock else failures, lock)
            raise bad_credentials("verify aksk signature fail.")
        with self._lock:
            self._ak_failures.pop(access_key, None)
        return ANY_REGION

    def _project_region(self, project_id: str, region: str | None) -> str:
        with self._lock:
            project = self._projects.get(project_id)
        if project is None or region not in (None, project.region):
            raise project_unavailable()
        return project.region

    def _fate(self, faults: Faults, key: str) -> Fate:
        """Draw this request's faults from (seed, path and query, how often it was asked)."""
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
        rng = random.Random(f"{self.seed}:{key}:{attempt}")
        return Fate(
            drop=rng.random() < faults.drop_rate,
            throttle=rng.random() < faults.throttle_rate,
            error=rng.random() < faults.error_rate,
            shift=rng.random() < faults.shift_rate,
            rng=rng,
        )

    def _project(self, project_id: str) -> Project:
        """Caller holds the lock."""
        try:
            return self._projects[project_id]
        except KeyError:
            raise KeyError(f"unknown project {project_id}") from None

    def _new_tasks(self, project: Project, n: int) -> list[dict]:
        """n tasks dated between the clock and its next tick. Caller holds the lock."""
        before = self._now_ms
        if self._fixed_clock:
            self._now_ms = before + FIXED_CLOCK_TICK_MS
        else:
            self._now_ms = max(before + 1, _wall_ms())
        days = (self._now_ms - before) / DAY_MS
        return generate_tasks(project.rng, n, now_ms=self._now_ms, days=days, pool=project.pool)

    def _enter(self) -> float:
        with self._lock:
            self._in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)
        return time.monotonic()

    def _leave(self, method: str, target: str, status: int, arrived: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self.requests.append((method, target, status))
            self.request_times.append((arrived, time.monotonic()))


def _insert(project: Project, tasks: list[dict]) -> list[dict]:
    """Add tasks in served order; refuses ids already present. Caller holds the lock.

    Hand-made malformed records (no task_id, odd types) are served as they are, so that a
    client's handling of bad records can be tested.
    """
    ids = [task["task_id"] for task in tasks if isinstance(task.get("task_id"), str)]
    if len(set(ids)) != len(ids) or project.ids.intersection(ids):
        raise ValueError("a task_id must be unique within its project")
    added = copy.deepcopy(tasks)
    for task in added:
        at = bisect.bisect(project.tasks, served_order(task), key=served_order)
        project.tasks.insert(at, task)
        project.encoded.insert(at, json.dumps(task, ensure_ascii=False).encode())
    project.ids.update(ids)
    return added


def _remove(project: Project, ids: list[str]) -> list[dict]:
    """Remove tasks by id, returning them. Caller holds the lock."""
    missing = [task_id for task_id in ids if task_id not in project.ids]
    if missing:
        raise KeyError(f"no such tasks: {missing}")
    wanted = set(ids)
    kept = [i for i, task in enumerate(project.tasks) if task.get("task_id") not in wanted]
    removed = [task for task in project.tasks if task.get("task_id") in wanted]
    project.tasks = [project.tasks[i] for i in kept]
    project.encoded = [project.encoded[i] for i in kept]
    project.ids -= wanted
    return removed


def _plain_page(project: Project, total: int, offset: int, limit: int) -> bytes:
    """The page's body, byte for byte what `json_reply` makes of it. Caller holds the lock."""
    tasks = b", ".join(project.encoded[offset : offset + limit])
    return b'{"total": %d, "tasks": [%b]}' % (total, tasks)


def _paging(query: str) -> tuple[int, int]:
    """limit and offset from the query string; 400 KPS.0002 when either is not a valid integer."""
    params = parse_qs(query, keep_blank_values=True)
    limit = _integer(params.get("limit"), DEFAULT_LIMIT, LIMIT_RANGE)
    offset = _integer(params.get("offset"), 0, OFFSET_RANGE)
    return limit, offset


def _integer(values: list[str] | None, default: int, bounds: tuple[int, int]) -> int:
    if values is None:
        return default
    if len(values) != 1 or not DIGITS.fullmatch(values[0]):
        raise parameter_error()
    value = int(values[0])
    if not bounds[0] <= value <= bounds[1]:
        raise parameter_error()
    return value


def _password_auth(body: bytes) -> tuple[str, str, str, str | None]:
    """(user, password, domain, scoped project id or None) from an IAM password request body."""
    try:
        auth = json.loads(body)["auth"]
        user = auth["identity"]["password"]["user"]
        credentials = (str(user["name"]), str(user["password"]), str(user["domain"]["name"]))
        project = (auth.get("scope") or {}).get("project") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ApiError(400, "APIGW.0201", "Request error: not an IAM password auth body.") from None
    project_id = project.get("id")
    return (*credentials, None if project_id is None else str(project_id))


def _throttled(retry_after: float | None) -> ApiError:
    headers = {} if retry_after is None else {"Retry-After": _seconds(retry_after)}
    return ApiError(429, "APIGW.0308", "The throttling threshold has been reached.", headers)


def _seconds(value: float) -> str:
    """Whole seconds as HTTP wants them; a fraction is kept so tests can wait briefly."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _maybe_malformed(task: dict, rng: random.Random, rate: float) -> dict:
    if rng.random() >= rate:
        return task
    kind = rng.choice(MALFORMATIONS)
    if kind == "missing_task_id":
        del task["task_id"]
    elif kind == "task_time_not_a_time":
        task["task_time"] = "not-a-time"
    elif kind == "server_id_number":
        task["server_id"] = rng.randrange(10**9)
    else:  # task_time_number: a JSON number, which the client is expected to accept
        task["task_time"] = int(task["task_time"])
    return task


def _bad_body(
    kind: str,
    total: int,
    page: list[dict],
    spare: list[dict],
    limit: int,
    fate: Fate,
    now_ms: int,
) -> Reply:
    """A 200 whose body is broken in the named way."""
    if kind == "html":
        html = "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"
        return Reply(200, html.encode(), content_type="text/html;charset=UTF-8")
    if kind == "truncated":
        whole = json.dumps({"total": total, "tasks": page}, ensure_ascii=False).encode()
        return Reply(200, whole, cut_at=len(whole) // 2)
    if kind == "not_json":
        return Reply(200, b"upstream connect error or disconnect/reset before headers")
    if kind == "not_utf8":
        # A message in Latin-1 inside a body that says UTF-8: one byte no UTF-8 decoder accepts.
        whole = json.dumps({"total": total, "tasks": page}).encode()
        return Reply(200, whole.replace(b'"task_error_msg": "', b'"task_error_msg": "\xe9', 1))
    broken: dict[str, Any] = {"total": total, "tasks": page}
    if kind == "tasks_missing":
        del broken["tasks"]
    elif kind == "tasks_not_list":
        broken["tasks"] = {task.get("task_id", str(i)): task for i, task in enumerate(page)}
    elif kind == "total_missing":
        del broken["total"]
    elif kind == "total_negative":
        broken["total"] = -1
    elif kind == "oversized_page":
        # limit + 1 tasks: the next real one if there is one, else made-up filler.
        filler = generate_tasks(fate.rng, limit + 1 - len(page) - len(spare), now_ms=now_ms)
        broken["tasks"] = page + spare + filler
    elif kind == "duplicate_ids" and page:
        # Keep the page within limit when possible, so only the duplicate is wrong.
        if 1 < len(page) == limit:
            page[-1] = copy.deepcopy(page[0])
        else:
            page.append(copy.deepcopy(page[0]))
    return json_reply(200, broken)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class _HttpServer(ThreadingHTTPServer):
    """Threaded server that knows its Simulator and keeps quiet about clients hanging up."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: Simulator):
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # a client that hangs up (or a dropped request) is not a server bug
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP into Simulator.handle calls and Replies back into bytes."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a pooled client expects
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK holds
    # the body back about 40 ms.
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections do not hold a thread forever
    server: _HttpServer

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.simulator.handle(self.command, self.path, headers, body)
        if reply.drop:
            self._hang_up()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body[: reply.cut_at])
        if reply.cut_at is not None:
            self._hang_up()

    def _hang_up(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    # Every method goes through the router, so unknown ones get the gateway's 404, not a 501.
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def version_string(self) -> str:
        return "api-gateway"  # the Server header Huawei's gateway sends

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read `Simulator.requests` instead."""
