"""The stand-in KPS `GET /v3/{project_id}/failed-tasks` (plus a tiny IAM), over real HTTP.

One ThreadingHTTPServer on 127.0.0.1 serves every region: the path prefix `/{region}` stands in
for the per-region host `kms.{region}.myhuaweicloud.com`. Faults are decided per request from an
RNG seeded by (seed, path, how many times that path was asked), so a run replays the same faults
whatever the interleaving of threads.

This module holds the simulator's state and routes requests; the rest lives beside it: the
tasks and paging (`store.py`), faults (`faults.py`), tokens, IAM and AK/SK (`gateway.py`, with
`signature.py`), answers (`replies.py`, `errors.py`) and the HTTP server (`httpd.py`).
"""

from __future__ import annotations

import copy
import random
import re
import threading
import time
from types import TracebackType
from urllib.parse import SplitResult, urlsplit

from kps_simulator.data import DAY_MS, generate_pool, generate_project_id, generate_tasks
from kps_simulator.errors import (
    ApiError,
    not_found,
    project_unavailable,
    throttled,
)
from kps_simulator.faults import BAD_BODIES, Fate, Faults, bad_body, draw_fate, maybe_malformed
from kps_simulator.gateway import ANY_REGION, Gateway
from kps_simulator.httpd import HttpServer
from kps_simulator.replies import Reply, error_reply, gzipped, json_reply
from kps_simulator.store import Project, insert, paging, plain_page, remove

FIXED_CLOCK_TICK_MS = 1000  # how far a fixed clock moves each time tasks are added later

FAILED_TASKS_PATH = re.compile(r"(?:/(?P<region>[^/]+))?/v3/(?P<project>[^/]+)/failed-tasks")
IAM_TOKENS_PATH = re.compile(r"(?:/[^/]+)?/v3/auth/tokens")
IAM_PROJECTS_PATH = re.compile(r"(?:/[^/]+)?/v3/auth/projects")


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
        self._gateway = Gateway(token)
        self._faults = Faults()
        self._attempts: dict[str, int] = {}
        self._in_flight = 0
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self, port: int = 0) -> Simulator:
        """Serve on 127.0.0.1:port (0 picks a free port) from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._server = HttpServer(("127.0.0.1", port), self)
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
            insert(project, tasks)
        return project_id

    def add_tasks(self, project_id: str, n: int | list[dict]) -> list[dict]:
        """Add n new tasks (dated after the clock, which moves on) or the given ones."""
        with self._lock:
            project = self._project(project_id)
            tasks = self._new_tasks(project, n) if isinstance(n, int) else n
            return copy.deepcopy(insert(project, tasks))

    def draw_tasks(self, project_id: str, n: int, *, now_ms: int, days: float = 120) -> list[dict]:
        """n tasks of the project's own key pairs and servers, failed in the `days` before
        `now_ms`, not added: an earlier period of its history, say."""
        with self._lock:
            project = self._project(project_id)
            return generate_tasks(project.rng, n, now_ms=now_ms, days=days, pool=project.pool)

    def delete_tasks(self, project_id: str, n: int = 1, ids: list[str] | None = None) -> list[dict]:
        """Remove the tasks with these ids, or else n random ones (all, if fewer remain)."""
        with self._lock:
            project = self._project(project_id)
            if ids is None:
                listed = sorted(project.ids)
                ids = project.rng.sample(listed, min(n, len(listed)))
            return remove(project, ids)

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
        self._gateway.add_iam_user(name, password, domain)

    def add_token(self, token: str) -> None:
        """Another token the gateway accepts for every project, like the constructor's."""
        self._gateway.add_token(token)

    def add_access_key(self, access_key: str, secret_key: str) -> None:
        """An AK/SK pair whose SDK-HMAC-SHA256 signatures the gateway accepts."""
        self._gateway.add_access_key(access_key, secret_key)

    def expire_token(self, token: str | None = None) -> None:
        """Make this token (default: every valid token) answer 401 APIGW.0307."""
        self._gateway.expire_token(token)

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
            reply = gzipped(reply)
            with self._lock:
                self.gzipped += 1
        return reply

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        if (match := FAILED_TASKS_PATH.fullmatch(parts.path)) and method == "GET":
            return self._failed_tasks(match["region"], match["project"], parts, headers)
        if IAM_TOKENS_PATH.fullmatch(parts.path) and method == "POST":
            return self._gateway.issue_token(body, self.projects())
        if IAM_PROJECTS_PATH.fullmatch(parts.path) and method == "GET":
            return self._list_projects(target, headers)
        raise not_found()

    def _failed_tasks(
        self, region: str | None, project_id: str, parts: SplitResult, headers: dict[str, str]
    ) -> Reply:
        faults = self._faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        scope = self._gateway.scope("GET", parts.geturl(), headers)
        project_region = self._project_region(project_id, region)
        if scope not in (ANY_REGION, project_region):
            raise ApiError(401, "APIGW.0307", "The token must be updated.")
        limit, offset = paging(parts.query)
        fate = self._fate(faults, parts.path + "?" + parts.query)
        if fate.drop:
            return Reply(0, drop=True)
        if fate.throttle:
            raise throttled(faults.retry_after)
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
                return Reply(200, plain_page(project, capped, offset, limit))
            page = copy.deepcopy(project.tasks[offset : offset + limit + 1])
        spare = page[limit:]  # one task past the page, for the oversized_page body
        page = [maybe_malformed(task, fate.rng, faults.malformed_rate) for task in page[:limit]]
        if faults.bad_body is None:
            return json_reply(200, {"total": capped, "tasks": page})
        return bad_body(faults.bad_body, capped, page, spare, limit, fate, now_ms)

    def _shift(self, project: Project, rng: random.Random) -> None:
        """The list moves between pages: one task appears or one disappears."""
        if project.ids and rng.random() < 0.5:
            remove(project, [rng.choice(sorted(project.ids))])
        else:
            # From the project's stream, not the request's: configure() replays request RNGs,
            # which would bring back a task_id that is already listed.
            insert(project, self._new_tasks(project, 1))

    def _list_projects(self, target: str, headers: dict[str, str]) -> Reply:
        self._gateway.scope("GET", target, headers)  # any valid token lists, scoped or not
        listing = [
            {"id": pid, "name": region, "enabled": True} for pid, region in self.projects().items()
        ]
        return json_reply(200, {"projects": listing})

    # helpers that read or change state; callers hold no lock unless said

    def _project_region(self, project_id: str, region: str | None) -> str:
        with self._lock:
            project = self._projects.get(project_id)
        if project is None or region not in (None, project.region):
            raise project_unavailable()
        return project.region

    def _fate(self, faults: Faults, key: str) -> Fate:
        """This request's faults; asked again, the same request meets the next draw."""
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
        return draw_fate(faults, self.seed, key, attempt)

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


def _wall_ms() -> int:
    return int(time.time() * 1000)
