"""HTTP client of the KPS failed-tasks API: auth, paging, retries, a list that shifts.

Knows nothing of dlt. It reads every page of a project, concurrently where `total` allows, and
hands each page's body to records.py, which turns it into arrow rows and rejects.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from .auth import Auth, AuthError, Stamp, canonical_query
from .records import PageTasks, TaskBatch, read_page, read_page_fast
from .settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    FAILED_TASKS_PATH,
    MAX_OFFSET,
    MAX_PAGE_SIZE,
    MAX_PASSES,
)
from .transport import Response, Transport, TransportError

_PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_BACKOFF_SECONDS = 30.0
# Pages parsed at once, whatever the concurrency: one per core. Parsing is CPU work, and with
# all 32 read threads parsing at once each page cost about twice the CPU.
_PARSERS = threading.BoundedSemaphore(os.cpu_count() or 1)
WHOLE, UNCONFIRMED, UNTRUSTED = "whole", "unconfirmed", "untrusted"


class KpsError(Exception):
    """Anything that stops a project's pass; `str()` is one line an operator can act on."""


class KpsApiError(KpsError):
    """The API answered with an error status and (usually) its error body."""

    def __init__(self, status: int, error_code: str, error_msg: str) -> None:
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        super().__init__(f"{status} {error_code} {error_msg}".strip())


class KpsResponseError(KpsError):
    """A 200 answer whose body is not a FailedTasks page."""


class ConfigError(ValueError):
    """A setting that cannot work; `str()` names the setting."""


@dataclass(frozen=True)
class Project:
    """One project in one region, validated before it enters a URL."""

    project_id: str
    region: str

    def __post_init__(self) -> None:
        if not isinstance(self.project_id, str) or not _PROJECT_ID.match(self.project_id):
            raise ConfigError(
                f"project id {self.project_id!r} is not 1-64 letters, digits, '-' or '_'"
            )
        if not isinstance(self.region, str) or not _REGION.match(self.region):
            raise ConfigError(f"region {self.region!r} is not a region name like 'cn-north-4'")


@dataclass(frozen=True)
class PageMark:
    """What a page said, kept between runs: its offset, a digest of its bytes, its size and
    `total`. A page with the same digest at the same offset says the same again."""

    offset: int
    digest: str
    size: int
    total: int | None


@dataclass
class Page:
    offset: int
    total: int | None
    size: int
    digest: str
    # None while the page is byte for byte what the last complete read saw (its `body` kept
    # until the pass shows whether it must be read after all).
    tasks: PageTasks | None
    body: bytes | None = None


@dataclass
class ProjectRead:
    """What one run read of one project."""

    project: Project
    batch: TaskBatch
    started_at: float
    # The pages of the last complete read, by offset: when a first pass brings back exactly
    # these, nothing changed and nothing needs parsing.
    known: Mapping[int, PageMark] = field(default_factory=dict)
    unchanged: bool = False
    # The pages of this read's last pass, for the next run; None unless the read was complete.
    marks: list[PageMark] | None = None
    # The pages of the pass before, by offset, while the next one reads: a page that comes back
    # with the same bytes is not parsed, nor held, twice.
    last_pass: Mapping[int, Page] = field(default_factory=dict)
    parsed: int = 0  # pages parsed; the others came back as a pass or the last run saw them
    finished_at: float = 0.0
    error: str | None = None
    complete: bool = False
    passes: int = 0
    pages: int = 0
    requests: int = 0
    hit_offset_ceiling: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tasks_seen(self) -> int:
        if self.unchanged:
            return sum(mark.size for mark in self.known.values())
        return len(self.batch)


def require_https(setting: str, url: str) -> None:
    """Credentials go only over https, except to loopback (where the simulator lives)."""
    parsable = url.replace("{region}", "region")  # the endpoint is a template
    scheme = urlsplit(parsable).scheme
    if scheme not in ("http", "https"):
        raise ConfigError(f"{setting} {url!r} is not an http(s) URL")
    if scheme == "http" and not is_loopback(parsable):
        raise ConfigError(f"{setting} {url!r}: credentials go only over https")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Throttle:
    """Shared by all of a client's requests: a 429 on one holds back the others too, so the
    client backs off as a whole instead of each request hammering on alone."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self) -> None:
        while (delay := self._until - time.monotonic()) > 0:
            time.sleep(delay)


class BoundedRetry(Retry):
    """urllib3's Retry, but a `Retry-After` longer than the backoff cap waits only the cap,
    and a 429 holds back every request of the client (`throttle`) for as long."""

    throttle: Throttle | None = None

    def new(self, **kwargs: Any) -> BoundedRetry:
        retry = super().new(**kwargs)
        retry.throttle = self.throttle  # urllib3 copies only its own settings
        return retry

    def sleep(self, response: Any = None) -> None:
        if self.throttle is not None and response is not None and response.status == 429:
            self.throttle.hold(self.get_retry_after(response) or self.get_backoff_time())
        super().sleep(response)

    def get_retry_after(self, response: Any) -> float | None:
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:
            return None  # a malformed Retry-After falls back to our own backoff
        return None if seconds is None else min(seconds, self.backoff_max)


def make_retry(
    max_retries: int,
    backoff_seconds: float,
    throttle: Throttle,
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
) -> BoundedRetry:
    """Retries of throttling, server errors, dropped connections and cut-off bodies, with
    backoff and jitter, honouring `Retry-After`; never 401/403, which no retry can mend."""
    retry = BoundedRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        other=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_seconds,
        backoff_max=max_backoff_seconds,
        backoff_jitter=backoff_seconds / 2,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    retry.throttle = throttle
    return retry


class KpsClient:
    """Reads the failed tasks of many projects, `concurrency` requests at a time at most."""

    def __init__(
        self,
        endpoint: str,
        auth: Auth,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 60.0,
        max_passes: int = MAX_PASSES,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        if isinstance(page_size, bool) or not isinstance(page_size, int):
            raise ConfigError(f"page_size {page_size!r} is not a whole number from 1 to 1000")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size {page_size} is not between 1 and {MAX_PAGE_SIZE}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency {concurrency!r} is not a whole number of at least 1")
        require_https("endpoint", endpoint)
        self.endpoint = endpoint.rstrip("/")
        self.auth = auth
        self.page_size = page_size
        self.concurrency = concurrency
        self.max_passes = max_passes
        self.throttle = Throttle()
        self.transport = Transport(
            make_retry(max_retries, backoff_seconds, self.throttle, max_backoff_seconds),
            timeout_seconds,
            pool_size=concurrency * 2,
        )
        self._slots = threading.BoundedSemaphore(concurrency)
        self._count_lock = threading.Lock()

    def http_get(self, url: str, stamp: Stamp) -> Response:
        return self.transport.request("GET", url, stamp("GET", url))

    def url(self, project: Project) -> str:
        base = self.endpoint.replace("{region}", project.region)
        return base + FAILED_TASKS_PATH.format(project_id=project.project_id)

    def get_page(self, project: Project, offset: int, read: ProjectRead) -> Page:
        """One page; raises KpsApiError for an error status, KpsResponseError for a bad body.

        A 401 saying the token expired is retried once with fresh credentials, where the kind
        of credentials can get fresh ones.
        """
        url = (
            self.url(project)
            + "?"
            + canonical_query([("limit", str(self.page_size)), ("offset", str(offset))])
        )
        response = self._get(project, url, read)
        if _expired(response) and self.auth.refresh(project.project_id):
            response = self._get(project, url, read)
        with self._count_lock:
            read.pages += 1
        if response.status != 200:
            raise api_error(response)
        body = response.body
        digest = page_digest(self.page_size, offset, body)
        mark = read.known.get(offset) if read.passes == 1 else None
        if mark is not None and mark.digest == digest:
            return Page(offset, mark.total, mark.size, digest, None, body)
        again = read.last_pass.get(offset)
        if again is not None and again.digest == digest and again.tasks is not None:
            return Page(offset, again.total, again.size, digest, again.tasks)
        total, tasks = parse_body(
            body, response.headers.get("Content-Type"), offset, self.page_size
        )
        with self._count_lock:
            read.parsed += 1
        return Page(offset, total, tasks.size, digest, tasks)

    def _get(self, project: Project, url: str, read: ProjectRead) -> Response:
        with self._slots:
            self.throttle.wait()
            try:
                stamp = self.auth.for_project(project.project_id, project.region)
                return self.http_get(url, stamp)
            except AuthError as exc:
                raise KpsError(str(exc)) from None
            except TransportError as exc:
                raise KpsError(f"request failed: {exc}") from exc
            finally:
                with self._count_lock:
                    read.requests += 1

    def read_project(
        self,
        project: Project,
        run_id: str,
        on_page: Callable[[Project, int], None] | None = None,
        known: Sequence[PageMark] = (),
    ) -> ProjectRead:
        """Every task of a project, re-reading while the list shifts; never raises KpsError.

        `complete` is set only when a pass proves itself whole or two passes agree: only then
        may tasks missing from the read be cleared. `known` are the pages of the project's last
        complete read: if they come back unchanged, the read is `unchanged` and parses nothing.
        """
        read = ProjectRead(
            project,
            TaskBatch(project.project_id, project.region, run_id),
            time.time(),
            known={mark.offset: mark for mark in known},
        )
        previous_ids: frozenset[str] | None = None
        try:
            while read.passes < self.max_passes:
                read.passes += 1
                ids, verdict = self._one_pass(project, read, on_page)
                if read.unchanged:
                    read.complete = True
                    break
                if verdict == UNTRUSTED:
                    break
                if verdict == WHOLE or ids == previous_ids:
                    read.complete = True
                    break
                if previous_ids is not None:
                    read.notes.append(
                        f"list changed between passes {read.passes - 1} and {read.passes}"
                    )
                previous_ids = ids
            else:
                read.notes.append(f"list kept shifting for {read.passes} passes")
            if read.complete:
                read.batch.keep_last_pass()
            else:
                read.notes.append("kept every task read, cleared nothing")
        except KpsError as exc:
            read.error = str(exc)
        read.last_pass = {}  # the batch holds what is kept
        if not (read.ok and read.complete) or read.batch.rejects:
            read.marks = None  # only a complete read without rejects can vouch for a next one
        read.finished_at = time.time()
        return read

    def _one_pass(
        self, project: Project, read: ProjectRead, on_page: Callable[[Project, int], None] | None
    ) -> tuple[frozenset[str], str]:
        """Reads the list once; returns its task ids and a verdict on the pass.

        WHOLE: the pages agree with each other and with `total`. UNCONFIRMED: a long list with an
        inexact `total` (deletions between its pages would go unseen), or signs of a shift; the
        next pass must read the same ids. UNTRUSTED: the API broke its own paging (ids repeated
        within one page, the offset ceiling reached): no number of passes can prove it whole.
        """
        pages = list(self._pages(project, read))
        if on_page:
            for page in pages:
                on_page(project, page.size)
        if pages and all(p.tasks is None for p in pages) and len(pages) == len(read.known):
            read.unchanged = True
            read.marks = sorted(read.known.values(), key=lambda mark: mark.offset)
            read.notes.append("unchanged since the last complete read")
            return frozenset(), WHOLE
        ids: list[str] = []
        verdict = WHOLE
        read.batch.start_pass()
        for page in pages:
            if page.tasks is None:  # the same as last time, but the pass as a whole is not
                page.tasks = parse_body(page.body or b"", None, page.offset, self.page_size)[1]
                page.body = None
                read.parsed += 1
            read.batch.add(page.tasks)
            page_ids = page.tasks.ids
            if len(set(page_ids)) != len(page_ids):
                read.notes.append(f"the page at offset {page.offset} repeats task ids")
                verdict = UNTRUSTED
            ids.extend(page_ids)
        if read.hit_offset_ceiling:
            read.notes.append(f"the API's offset ceiling ({MAX_OFFSET}) was reached")
            verdict = UNTRUSTED
        id_set = frozenset(ids)
        totals = {page.total for page in pages}
        if verdict == WHOLE and (len(id_set) != len(ids) or len(totals) > 1):
            read.notes.append(f"list shifted during pass {read.passes}")
            verdict = UNCONFIRMED
        non_empty = sum(1 for page in pages if page.size)
        if verdict == WHOLE and non_empty > 1 and totals != {len(ids)}:
            verdict = UNCONFIRMED
        read.marks = [PageMark(p.offset, p.digest, p.size, p.total) for p in pages]
        read.last_pass = {page.offset: page for page in pages}
        return id_set, verdict

    def _pages(self, project: Project, read: ProjectRead) -> Iterator[Page]:
        """Pages in offset order: the first, then those `total` announces in parallel, then
        one by one until a short page or the offset ceiling."""
        limit = self.page_size
        page = self.get_page(project, 0, read)
        yield page
        offset = page.size
        if page.size < limit:
            return
        if page.total and page.total > offset:
            planned = range(offset, min(page.total, MAX_OFFSET + 1), limit)
            for page in self._fetch_parallel(project, planned, read):
                yield page
                offset = page.offset + page.size
                if page.size < limit:
                    return
        while offset <= MAX_OFFSET:
            page = self.get_page(project, offset, read)
            yield page
            if page.size < limit:
                return
            offset += page.size
        read.hit_offset_ceiling = True

    def _fetch_parallel(
        self, project: Project, offsets: Sequence[int], read: ProjectRead
    ) -> list[Page]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self.get_page, project, o, read) for o in offsets]
            return [f.result() for f in futures]

    def list_projects(self, iam_endpoint: str) -> list[Project]:
        """Every enabled project IAM lists for these credentials, each in its region (a
        project's name is its region, or `region_subproject`)."""
        url = iam_endpoint.rstrip("/") + "/v3/auth/projects"
        try:
            response = self.http_get(url, self.auth.for_iam())
        except AuthError as exc:
            raise ConfigError(f"listing projects: {exc}") from None
        except TransportError as exc:
            raise ConfigError(f"listing projects at {url} failed: {exc}") from None
        if response.status != 200:
            raise ConfigError(f"listing projects at {url}: {api_error(response)}")
        try:
            listed = response.json()["projects"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"listing projects at {url}: the answer has no 'projects' list"
            ) from None
        found = []
        for item in listed:
            region = str(item.get("name", "")).split("_")[0]
            if item.get("enabled", True) and _REGION.match(region):
                found.append(Project(str(item.get("id")), region))
        return found

    def read_projects(
        self,
        projects: Sequence[Project],
        run_id: str,
        on_page: Callable[[Project, int], None] | None = None,
        known: Mapping[str, Sequence[PageMark]] | None = None,
    ) -> Iterator[ProjectRead]:
        """Reads projects concurrently, yielding each as it finishes; `known` holds the pages
        of each project's last complete read (see `read_project`)."""
        known = known or {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures: list[Future[ProjectRead]] = [
                pool.submit(self.read_project, p, run_id, on_page, known.get(p.project_id, ()))
                for p in region_by_region(projects)
            ]
            for future in as_completed(futures):
                yield future.result()


def region_by_region(projects: Sequence[Project]) -> list[Project]:
    """The projects with their regions taking turns (a1, b1, a2, b2, a3...): each region's
    gateway throttles on its own, so the requests in flight are spread over them."""
    by_region: dict[str, list[Project]] = {}
    for project in projects:
        by_region.setdefault(project.region, []).append(project)
    turns = itertools.zip_longest(*by_region.values())
    return [project for turn in turns for project in turn if project is not None]


def page_digest(limit: int, offset: int, body: bytes) -> str:
    """Names a page's bytes at its place in the list; 128 bits, so equal means equal.

    SHA-256, not BLAKE2: OpenSSL computes it with the CPU's SHA instructions (most x86 and ARM
    servers since 2017 have them), so it is the faster of the two, and every page of every run
    is digested. Marks of another digest only fail to match: those
    pages are parsed again, once."""
    digest = hashlib.sha256(b"%d:%d:" % (limit, offset))
    digest.update(body)
    return digest.hexdigest()[:32]


def parse_body(
    body: bytes, content_type: str | None, offset: int, limit: int
) -> tuple[int | None, PageTasks]:
    """`total` and the records of a 200 answer's body, checked for the shape of a page."""
    where = f"page at offset {offset}"
    with _PARSERS:
        fast = read_page_fast(body)
    total, tasks = fast if fast is not None else _read_page_carefully(body, content_type, where)
    if tasks.size > limit:
        raise KpsResponseError(
            f"{where} holds {tasks.size} tasks, more than the limit of {limit}: paging cannot"
            " be trusted"
        )
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        total = None  # only a hint: a missing or impossible total plans nothing
    return total, tasks


def _read_page_carefully(
    body: bytes, content_type: str | None, where: str
) -> tuple[Any, PageTasks]:
    """The body parsed to Python objects, every record checked on its own."""
    try:
        parsed = json.loads(body.decode("utf-8-sig"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        kind = content_type or "unknown content type"
        snippet = _first_line(body.decode("utf-8", errors="replace"))[:60]
        raise KpsResponseError(f"{where} is not JSON ({kind}): {snippet!r}") from exc
    if not isinstance(parsed, dict):
        raise KpsResponseError(f"{where} is a JSON {type(parsed).__name__}, not an object")
    tasks = parsed.get("tasks")
    if not isinstance(tasks, list):
        state = "missing" if tasks is None else f"a JSON {type(tasks).__name__}"
        raise KpsResponseError(f"{where}: 'tasks' is {state}, not a list")
    return parsed.get("total"), read_page(tasks)


def api_error(response: Response) -> KpsApiError:
    """The API's error_code and error_msg, or what the status alone says."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error_code" in body:
        return KpsApiError(
            response.status, str(body.get("error_code")), str(body.get("error_msg", ""))
        )
    return KpsApiError(response.status, "HTTP", response.reason or "error")


def _expired(response: Response) -> bool:
    return response.status == 401 and api_error(response).error_code == "APIGW.0307"


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""
