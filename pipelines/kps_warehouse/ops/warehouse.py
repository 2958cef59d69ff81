"""The warehouse files: one writer at a time, and readers that never block it.

DuckDB allows one writer per file, and while any other process holds the file open, even
read-only, a load cannot start. So runs never write the file analysts open. A run takes an
exclusive lock, copies the warehouse to a private writer copy beside it, loads and builds the
models there, and then publishes it: the writer copy renamed over the warehouse file in one
atomic step. Readers that had the old file open keep reading it undisturbed; the next open sees
the new one. Between runs only the warehouse is on disk. A run killed at any point leaves the
published file as it was; the writer copy and dlt's pending load package stay behind, and the
next run finishes that load before its own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from kps_warehouse.crash_points import crash_point

# A run that builds models leaves compacting to them (`COMPACT_AT_DELETED_SHARE` in
# transform/runner.py says why and when): its other connections to the writer copy open with
# this, and publishing always does. With DuckDB's defaults the next checkpoint, the next run's
# load, compacted whatever the last run's models had deleted or appended (0.2-1.2 s a changed
# run at a million tasks).
NO_COMPACTION = {"max_vacuum_tasks": 0}


class WarehouseBusy(Exception):
    """Another run holds the warehouse; `str()` says which and for how long we waited."""


@dataclass(frozen=True)
class Warehouse:
    """The published file at `path`, and the writer copy and lock file beside it."""

    path: Path

    @property
    def writer(self) -> Path:
        return self.path.with_name(f".{self.path.stem}.writer.duckdb")

    @property
    def lock_file(self) -> Path:
        return self.path.with_name(f".{self.path.stem}.lock")

    @contextmanager
    def writing(self, wait_seconds: float = 0.0) -> Iterator[Path]:
        """Holds the lock and yields the writer copy; publishes it when the block succeeds."""
        with self.locked(wait_seconds):
            fresh = not self.writer.exists() and not self.path.exists()
            self._adopt()
            try:
                yield self.writer
            except BaseException:
                # A first run that failed leaves no empty warehouse behind. (A run killed outright
                # never gets here, and a later run finds what it left.)
                if fresh:
                    self._remove(self.writer)
                raise
            self.publish()

    def publish(self) -> None:
        """Renames the writer over the published file atomically (the caller holds the lock)."""
        if not self.writer.exists():
            return
        # A checkpoint folds the write-ahead log into the file, so the file alone is whole.
        # Every other connection to the writer is closed by now, and must be: DuckDB hands a
        # later connect to the same path the database still open there, which after the
        # rename is the warehouse (tests/test_first_hour.py checks that none is left).
        with duckdb.connect(str(self.writer), config=NO_COMPACTION) as con:
            con.execute("checkpoint")
        crash_point("mid-publish")
        self.writer.replace(self.path)

    def drop(self) -> None:
        """Deletes the published file and the writer copy (the caller holds the lock)."""
        for path in (self.path, self.writer):
            self._remove(path)

    @staticmethod
    def _remove(path: Path) -> None:
        path.unlink(missing_ok=True)
        Path(f"{path}.wal").unlink(missing_ok=True)

    def _adopt(self) -> None:
        """The published warehouse becomes the writer's start, unless a killed run left a
        writer copy, whose pending load the run finishes first."""
        for stale in self.path.parent.glob(f"{self.writer.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        if not self.writer.exists() and self.path.exists():
            staged = self.writer.with_name(f"{self.writer.name}.{os.getpid()}.tmp")
            shutil.copyfile(self.path, staged)
            _flush_in_background(staged)
            staged.replace(self.writer)  # a copy cut short by a kill is never taken for whole

    @contextmanager
    def locked(self, wait_seconds: float) -> Iterator[None]:
        """The exclusive writer lock, waiting up to `wait_seconds` for another run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("a+") as handle:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "another process"
                        raise WarehouseBusy(
                            f"warehouse {self.path} is busy: {holder} holds it"
                            f" (waited {wait_seconds:g} s; kps_warehouse.lock_wait_seconds)"
                        ) from None
                    time.sleep(0.2)
            handle.seek(0)
            handle.truncate()
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            handle.write(f"run pid {os.getpid()} since {since}")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)


def _flush_in_background(path: Path) -> None:
    """Writes the copy at `path` to disk while the run goes on (reading the API, mostly).
    DuckDB's first checkpoint in it syncs the file, and would wait for every page of the copy
    still in memory: 0.2-0.4 s of a run at four million tasks."""
    handle = os.open(path, os.O_RDONLY)

    def flush() -> None:
        try:
            os.fsync(handle)
        except OSError:
            pass  # only an early start: DuckDB's own sync reports a disk that fails
        finally:
            os.close(handle)

    threading.Thread(target=flush, name="flush-writer-copy", daemon=True).start()
