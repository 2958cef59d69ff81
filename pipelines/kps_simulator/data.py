"""Seeded, realistic FailedTasks data, shaped exactly like the KPS `failed-tasks` answer."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

DAY_MS = 86_400_000
BURST_SPAN_MS = 3 * 3_600_000  # a burst is one bad afternoon: at most three hours
BURST_SHARE = 0.3  # share of tasks that belong to a burst
TASKS_PER_BURST = 50  # one burst per this many tasks, so bursts scale with history size
NO_CODE_SHARE = 0.15  # the API's own example has a null task_error_code

# Documented types first; FAILED_BIND and RUNNING_RESET appear in the wild, so the client must
# treat operate_type as free text.
OPERATE_TYPES: tuple[tuple[str, int], ...] = (
    ("FAILED_RESET", 35),
    ("FAILED_REPLACE", 30),
    ("FAILED_UNBIND", 25),
    ("FAILED_BIND", 8),
    ("RUNNING_RESET", 2),
)

# KPS codes are the documented ones; the ECS codes are illustrative of failures reported by the
# server side. Some messages are localised, as a console in another language would record them.
CODED_ERRORS: tuple[tuple[str, str], ...] = (
    ("KPS.0003", "Dependency service unavailable"),
    ("KPS.0004", "Response error"),
    ("KPS.0004", "Update public key error"),
    ("KPS.5001", "Database query error"),
    ("KPS.5004", "Database update error"),
    ("KPS.0004", "更新公钥失败"),
    ("ECS.0114", "The ECS is not in the required state (it must be stopped)."),
    ("ECS.0114", "clé publique invalide"),
    ("ECS.0005", "The ECS does not exist or has been deleted."),
    ("ECS.0219", "Failed to inject the public key: the cloud-init agent is not running."),
)
UNCODED_MESSAGES: tuple[str | None, ...] = (
    "Update public key error",
    "Update public key error",
    "SSH connection to the server timed out after 300 s",
    "The key pair is being used by another task",
    "更新公钥失败",
    "clé publique invalide",
    None,
)

KEYPAIR_STEMS = (
    "KeyPair",
    "prod-deploy",
    "ops-admin",
    "jenkins-ci",
    "backup",
    "bastion-key",
    "ansible",
    "dba",
    "release",
    "migration",
)
SERVER_STEMS = ("ecs", "web", "api", "db", "k8s-node", "bastion", "batch", "cache", "gw")
LOCALISED_SERVER_STEM = "测试服务器"  # one server in fifteen has a non-ASCII name
ZIPF_EXPONENT = 1.3  # a few key pairs fail much more than the rest


@dataclass(frozen=True)
class Server:
    """A VM a key pair is bound to."""

    name: str
    id: str


@dataclass(frozen=True)
class Pool:
    """A project's key pairs and servers: the same ones fail again and again, so trends exist."""

    keypairs: tuple[str, ...]
    weights: tuple[float, ...]
    servers: tuple[tuple[Server, ...], ...]  # servers[i] are the servers using keypairs[i]

    def pick_keypair(self, rng: random.Random) -> int:
        """Index of a key pair, skewed towards the failure-prone ones."""
        return rng.choices(range(len(self.keypairs)), weights=self.weights)[0]


def generate_project_id(rng: random.Random) -> str:
    """A project id like Huawei's: 32 lowercase hex characters."""
    return f"{rng.getrandbits(128):032x}"


def random_uuid(rng: random.Random) -> str:
    """A uuid4 string drawn from rng, so ids are reproducible."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate_pool(rng: random.Random) -> Pool:
    """5–20 key pairs and 10–60 servers, every key pair bound to at least one server."""
    keypairs = _unique_names(rng, rng.randint(5, 20), _keypair_name)
    servers = [
        Server(name, random_uuid(rng))
        for name in _unique_names(rng, rng.randint(max(10, len(keypairs)), 60), _server_name)
    ]
    weights = [1 / (rank + 1) ** ZIPF_EXPONENT for rank in range(len(keypairs))]
    owners = list(range(len(keypairs)))  # the first servers give every key pair one
    owners += rng.choices(range(len(keypairs)), weights=weights, k=len(servers) - len(keypairs))
    by_keypair: list[list[Server]] = [[] for _ in keypairs]
    for server, owner in zip(servers, owners, strict=True):
        by_keypair[owner].append(server)
    return Pool(tuple(keypairs), tuple(weights), tuple(tuple(s) for s in by_keypair))


def generate_tasks(
    rng: random.Random, n: int, *, now_ms: int, days: float = 120, pool: Pool | None = None
) -> list[dict]:
    """n FailedTasks dicts with task_time in [now_ms - days, now_ms), in no particular order.

    Without a pool one is drawn from rng; pass the project's pool to keep adding to its trends.
    """
    pool = pool or generate_pool(rng)
    window = max(1, int(days * DAY_MS))
    bursts = [_burst(rng, pool, now_ms, window) for _ in range(n // TASKS_PER_BURST)]
    tasks = []
    for _ in range(n):
        if bursts and rng.random() < BURST_SHARE:
            tasks.append(_burst_task(rng, rng.choice(bursts)))
        else:
            tasks.append(_background_task(rng, pool, now_ms, window))
    return tasks


@dataclass(frozen=True)
class _Burst:
    """Many failures of one operation on one key pair and server within a few hours."""

    keypair: str
    server: Server
    operate_type: str
    start_ms: int
    span_ms: int


def _burst(rng: random.Random, pool: Pool, now_ms: int, window: int) -> _Burst:
    keypair = pool.pick_keypair(rng)
    span = min(window, BURST_SPAN_MS)
    return _Burst(
        keypair=pool.keypairs[keypair],
        server=rng.choice(pool.servers[keypair]),
        operate_type=_operate_type(rng),
        start_ms=now_ms - span - rng.randrange(window - span + 1),
        span_ms=span,
    )


def _burst_task(rng: random.Random, burst: _Burst) -> dict:
    time_ms = burst.start_ms + rng.randrange(burst.span_ms)
    return _task(rng, burst.keypair, burst.server, burst.operate_type, time_ms)


def _background_task(rng: random.Random, pool: Pool, now_ms: int, window: int) -> dict:
    keypair = pool.pick_keypair(rng)
    server = rng.choice(pool.servers[keypair])
    time_ms = now_ms - 1 - rng.randrange(window)
    return _task(rng, pool.keypairs[keypair], server, _operate_type(rng), time_ms)


def _task(
    rng: random.Random, keypair: str, server: Server, operate_type: str, time_ms: int
) -> dict:
    code, message = _error(rng)
    return {
        "task_id": random_uuid(rng),
        "operate_type": operate_type,
        "task_time": str(time_ms),  # the API sends epoch milliseconds as a string
        "task_error_code": code,
        "task_error_msg": message,
        "server_name": server.name,
        "server_id": server.id,
        "keypair_name": keypair,
    }


def _operate_type(rng: random.Random) -> str:
    names, weights = zip(*OPERATE_TYPES, strict=True)
    return rng.choices(names, weights=weights)[0]


def _error(rng: random.Random) -> tuple[str | None, str | None]:
    if rng.random() < NO_CODE_SHARE:
        return None, rng.choice(UNCODED_MESSAGES)
    return rng.choice(CODED_ERRORS)


def _keypair_name(rng: random.Random) -> str:
    return f"{rng.choice(KEYPAIR_STEMS)}-{rng.getrandbits(16):04x}"


def _server_name(rng: random.Random) -> str:
    stem = LOCALISED_SERVER_STEM if rng.random() < 1 / 15 else rng.choice(SERVER_STEMS)
    return f"{stem}-{rng.randrange(1, 100):02d}"


def _unique_names(rng: random.Random, n: int, make: Callable[[random.Random], str]) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = make(rng)
        if name not in names:
            names.append(name)
    return names
