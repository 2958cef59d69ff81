"""Keeps the rows of finished projects on disk, hashed, until dlt extracts them.

A run reads every project before it loads (which projects were read completely decides what may
be cleared), so without this every task read would be held in memory until the load: about
0.3 GB more per million tasks. Rows are hashed and written out a chunk at a time as projects
finish, so a run holds one chunk and the reads in flight, however many tasks it reads.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .records import TaskBatch, fingerprints, tasks_table, with_row_hashes
from .settings import ROWS_PER_TABLE


class TaskSpill:
    """The hashed rows of the batches added, in chunks of about `chunk_rows` rows each, plus
    each project's fingerprint (see `fingerprints`).

    Each chunk is a file in `directory`, which is emptied first and removed by `close`: arrow's
    own format, uncompressed, written and mapped back at the speed of a copy. Without a
    directory (no pipeline: a dry run) the chunks stay in memory and nothing is written.
    """

    def __init__(self, directory: Path | None = None, chunk_rows: int = ROWS_PER_TABLE) -> None:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)  # left by a run that was killed
            directory.mkdir(parents=True)
        self.directory = directory
        self.fingerprints: dict[str, str] = {}
        self._chunk_rows = chunk_rows
        self._waiting: list[TaskBatch] = []
        self._waiting_rows = 0
        self._chunks: list[Path | pa.Table] = []
        self._written = 0

    def add(self, batch: TaskBatch) -> None:
        """Takes the rows of a project read to its end; the batch lets its pages go once its
        chunk is made."""
        self._waiting.append(batch)
        self._waiting_rows += batch.rows_held
        if self._waiting_rows >= self._chunk_rows:
            self.flush()

    def flush(self) -> None:
        """Hashes the rows of the batches waiting, and makes them a chunk of their own."""
        if not self._waiting:
            return
        tasks = with_row_hashes(tasks_table(self._waiting))
        self._waiting, self._waiting_rows = [], 0
        self.fingerprints.update(fingerprints(tasks))
        if not tasks.num_rows:
            return
        if self.directory is None:
            self._chunks.append(tasks)
            return
        self._written += 1
        path = self.directory / f"chunk-{self._written:06d}.arrow"
        with pa.ipc.new_file(path, tasks.schema) as writer:
            for rows in tasks.to_batches():
                # arrow writes a batch of no rows (a pass's last, empty page) with the whole
                # buffers of the columns built in one piece: files grew six-fold, and more
                if rows.num_rows:
                    writer.write_batch(rows)
        self._chunks.append(path)

    def tables(self, leave_out: Collection[str] = ()) -> Iterator[pa.Table]:
        """The rows, a chunk at a time, without those of the projects in `leave_out`. Each
        chunk goes once read (its file deleted): the rows can be taken once."""
        self.flush()
        left_out = pa.array(sorted(leave_out), pa.string())
        while self._chunks:
            chunk = self._chunks.pop(0)
            if isinstance(chunk, Path):
                # Mapped, not read: no copy, and no freed copy kept by the allocator; the
                # mapping goes with the last of the table's buffers.
                with pa.memory_map(str(chunk)) as file:
                    table = pa.ipc.open_file(file).read_all()
                chunk.unlink()
            else:
                table = chunk
            if len(left_out):
                table = table.filter(pc.invert(pc.is_in(table["project_id"], left_out)))
            if table.num_rows:
                yield table

    def close(self) -> None:
        """Lets the chunks go and removes their directory."""
        self._chunks.clear()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
