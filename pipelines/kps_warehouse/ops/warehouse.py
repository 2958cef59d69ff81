"""The warehouse files: one writer at a time, and readers that never block it.

DuckDB allows one writer per file, and while any other process holds the file open, even
read-only, a load cannot start. So runs never write the file analysts open. A run takes an
exclusive lock, loads and builds the models in a private writer copy beside the warehouse, and
then publishes it: a full copy renamed over the warehouse file in one atomic step. Readers that
had the old file open keep reading it undisturbed; the next open sees the new one. A run killed
at any point leaves the published file as it was; the writer copy and dlt's pending load package
stay behind, and the next run finishes that load before its own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from kps_warehouse.crash_points import crash_point


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
            self._adopt()
            yield self.writer
            self.publish()

    def publish(self) -> None:
        """Copies the writer over the published file atomically (the caller holds the lock)."""
        if not self.writer.exists():
            return
        # A checkpoint folds the write-ahead log into the file, so the copy is whole.
        with duckdb.connect(str(self.writer)) as con:
            con.execute("checkpoint")
        staged = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        shutil.copyfile(self.writer, staged)
        crash_point("mid-publish")
        staged.replace(self.path)

    def drop(self) -> None:
        """Deletes the published file and the writer copy (the caller holds the lock)."""
        for path in (self.path, self.writer):
            path.unlink(missing_ok=True)
            Path(f"{path}.wal").unlink(missing_ok=True)

    def _adopt(self) -> None:
        """A warehouse published before (or copied in by hand) becomes the writer's start."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        if not self.writer.exists() and self.path.exists():
            shutil.copyfile(self.path, self.writer)

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
