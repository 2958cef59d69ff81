"""The alert settings under `kps_warehouse.alerts`: receivers, mutes, thresholds and the budget.

A receiver's `url` and `secret` are secrets: the receivers are resolved as one, so dlt keeps
them out of its traces and refuses them in config.toml; no message here quotes them, and a
receiver is known everywhere else by its `name` (or, without one, by a digest of its URL).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import ConfigurationException, ValueNotSecretException
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretValue

from kps_warehouse.source.client import ConfigError, is_loopback

SECTION = "kps_warehouse.alerts"
FORMATS = ("json", "slack", "feishu", "dingtalk", "wecom")
EVENT_KINDS = ("spike", "new_error_code", "project_failing", "project_recovered")
SEVERITIES = ("info", "warning", "critical")
RECEIVER_KEYS = {"url", "format", "name", "secret", "events", "min_severity"}

DEFAULT_FAILING_RUNS = 3
DEFAULT_LOOKBACK_DAYS = 2
DEFAULT_BUDGET_SECONDS = 10.0


@dataclass(frozen=True)
class Receiver:
    """Where alerts go. `id` is what the warehouse and the output say instead of the URL."""

    id: str
    format: str
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    events: frozenset[str] = frozenset(EVENT_KINDS)
    min_severity: str = "info"

    def wants(self, event: str, severity: str) -> bool:
        return event in self.events and rank(severity) >= rank(self.min_severity)


@dataclass(frozen=True)
class Mute:
    """Events whose key matches `pattern` (shell-style, `*` and `?`) are not sent before `until`."""

    pattern: str
    until: datetime

    def covers(self, key: str, now: datetime) -> bool:
        return now < self.until and fnmatchcase(key, self.pattern)


@dataclass(frozen=True)
class Settings:
    receivers: tuple[Receiver, ...]
    mutes: tuple[Mute, ...] = ()
    failing_runs: int = DEFAULT_FAILING_RUNS
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    budget_seconds: float = DEFAULT_BUDGET_SECONDS

    def muted(self, key: str, now: datetime) -> bool:
        return any(mute.covers(key, now) for mute in self.mutes)


def rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@configspec
class AlertsConfiguration(BaseConfiguration):
    """`kps_warehouse.alerts` as dlt's providers hold it; checked by `settings()`."""

    receivers: TSecretValue | None = None
    mutes: Any | None = None
    failing_runs: Any | None = None
    lookback_days: Any | None = None
    budget_seconds: Any | None = None


def settings() -> Settings | None:
    """The alert settings from dlt's providers; None when no receiver is configured.

    Raises ConfigError naming the setting (never its value) when one cannot work.
    """
    try:
        raw = resolve_configuration(AlertsConfiguration(), sections=tuple(SECTION.split(".")))
    except ValueNotSecretException:
        raise ConfigError(
            f"{SECTION}.receivers holds webhook URLs, which are secrets: set it in"
            " .dlt/secrets.toml or KPS_WAREHOUSE__ALERTS__RECEIVERS, not in config.toml"
        ) from None
    except ConfigurationException as exc:
        raise ConfigError(f"{SECTION}: {type(exc).__name__}") from None
    receivers_raw = _list("receivers", raw.receivers)
    if not receivers_raw:
        return None
    receivers = tuple(_receiver(i, item) for i, item in enumerate(receivers_raw))
    ids = [r.id for r in receivers]
    if duplicated := sorted({i for i in ids if ids.count(i) > 1}):
        raise ConfigError(f"{SECTION}.receivers: the name {duplicated[0]!r} is used twice")
    return Settings(
        receivers=receivers,
        mutes=tuple(_mute(i, item) for i, item in enumerate(_list("mutes", raw.mutes))),
        failing_runs=int(
            _number("failing_runs", raw.failing_runs, DEFAULT_FAILING_RUNS, minimum=1, whole=True)
        ),
        lookback_days=int(
            _number(
                "lookback_days", raw.lookback_days, DEFAULT_LOOKBACK_DAYS, minimum=1, whole=True
            )
        ),
        budget_seconds=_number(
            "budget_seconds", raw.budget_seconds, DEFAULT_BUDGET_SECONDS, minimum=0
        ),
    )


def _list(name: str, value: Any) -> list[Any]:
    """A list setting: a TOML array, or a JSON list in the environment."""
    key = f"{SECTION}.{name}"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"{key} is not a JSON list") from None
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list of tables")
    return value


def _receiver(index: int, item: Any) -> Receiver:
    where = f"{SECTION}.receivers[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be a table with url and format")
    if unknown := sorted(set(item) - RECEIVER_KEYS):
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {sorted(RECEIVER_KEYS)})")
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(f"{where}: name must be a non-empty string")
    where = f"{where} ({name})" if name else where
    fmt = item.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"{where}: format must be one of {', '.join(FORMATS)}")
    url = item.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where}: url is missing")
    _check_url(where, url)
    secret = item.get("secret") or None
    if secret is not None and not isinstance(secret, str):
        raise ConfigError(f"{where}: secret must be a string")
    if secret and fmt in ("slack", "wecom"):
        raise ConfigError(f"{where}: {fmt} webhooks are not signed; remove the secret")
    events = item.get("events", list(EVENT_KINDS))
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events or set(events) - set(EVENT_KINDS):
        raise ConfigError(f"{where}: events must be a list of {', '.join(EVENT_KINDS)}")
    severity = item.get("min_severity", "info")
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: min_severity must be one of {', '.join(SEVERITIES)}")
    return Receiver(
        id=name.strip() if name else f"{fmt}-{hashlib.sha256(url.encode()).hexdigest()[:12]}",
        format=fmt,
        url=url,
        secret=secret,
        events=frozenset(events),
        min_severity=severity,
    )


def _check_url(where: str, url: str) -> None:
    """HTTPS only, except to loopback; the message never quotes the URL, which is a secret."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: url is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(url):
        raise ConfigError(f"{where}: url must be https:// (plain http only to loopback)")


def _mute(index: int, item: Any) -> Mute:
    where = f"{SECTION}.mutes[{index}]"
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
        raise ConfigError(f"{where} must be a table with key (a pattern) and until")
    until = item.get("until")
    if isinstance(until, str):
        try:
            until = datetime.fromisoformat(until)
        except ValueError:
            raise ConfigError(f"{where}: until {until!r} is not an ISO 8601 time") from None
    if not isinstance(until, datetime):
        raise ConfigError(f"{where}: until must be a time such as 2026-12-31T00:00:00Z")
    # a time without a zone is UTC, as every time in the warehouse is
    return Mute(item["key"], until if until.tzinfo else until.replace(tzinfo=UTC))


def _number(name: str, value: Any, default: float, *, minimum: float, whole: bool = False) -> float:
    key = f"{SECTION}.{name}"
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} {value!r} is not a number") from None
    if number < minimum or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{key} {value!r} must be {kind} of at least {minimum:g}")
    return number
