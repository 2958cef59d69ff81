"""The spill: finished projects' rows hashed a chunk at a time, on disk until the load."""

from __future__ import annotations

import pyarrow as pa

from kps_warehouse.source.records import (
    TaskBatch,
    fingerprints,
    read_page,
    read_page_fast,
    tasks_table,
    with_row_hashes,
)
from kps_warehouse.source.spill import TaskSpill

from .test_records import TASK, body


def batch(project_id: str, tasks: int, *, fast: bool = True, region: str = "cn-north-4"):
    """A project's batch of `tasks` plain tasks, read in one pass."""
    records = [
        {**TASK, "task_id": f"{project_id}-{n}", "task_time": str(1772323200000 + n)}
        for n in range(tasks)
    ]
    made = TaskBatch(project_id, region, "run-1")
    if fast:
        _, page = read_page_fast(body(records))
    else:
        page = read_page(records)
    made.add(page)
    return made


def sorted_rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda row: (row["project_id"], row["task_id"]))


def test_rows_come_back_as_hashed_in_one_go_written_a_chunk_at_a_time(tmp_path):
    def batches():
        return [batch("p1", 3), batch("p2", 4, fast=False), batch("p3", 0), batch("p4", 2)]

    whole = with_row_hashes(tasks_table(batches()))
    spill = TaskSpill(tmp_path / "spill", chunk_rows=4)

    for each in batches():
        spill.add(each)
    spill.flush()

    # p1 alone is under 4 rows; p1 + p2 make the first chunk, p3 + p4 the second
    assert sorted(p.name for p in (tmp_path / "spill").iterdir()) == [
        "chunk-000001.arrow",
        "chunk-000002.arrow",
    ]
    assert spill.fingerprints == fingerprints(whole)
    assert "p3" not in spill.fingerprints  # lists nothing: the caller's empty fingerprint
    tables = list(spill.tables())
    assert [t.num_rows for t in tables] == [7, 2]
    assert all(t.schema == whole.schema for t in tables)
    assert sorted_rows(pa.concat_tables(tables)) == sorted_rows(whole)
    # taken once: each file goes as it is read
    assert list((tmp_path / "spill").iterdir()) == []
    assert list(spill.tables()) == []


def test_projects_left_out_are_not_read_back(tmp_path):
    spill = TaskSpill(tmp_path / "spill", chunk_rows=100)
    for each in (batch("p1", 3), batch("p2", 2), batch("p3", 1)):
        spill.add(each)

    tables = list(spill.tables(leave_out={"p1", "p3"}))

    assert [row["task_id"] for row in pa.concat_tables(tables).to_pylist()] == ["p2-0", "p2-1"]


def test_a_chunk_of_only_left_out_projects_yields_no_table(tmp_path):
    spill = TaskSpill(tmp_path / "spill", chunk_rows=2)
    for each in (batch("p1", 2), batch("p2", 2)):
        spill.add(each)

    assert [t["project_id"].to_pylist() for t in spill.tables(leave_out={"p1"})] == [["p2", "p2"]]


def test_a_batch_lets_its_pages_go_once_its_chunk_is_written(tmp_path):
    spill = TaskSpill(tmp_path / "spill", chunk_rows=2)
    first, second = batch("p1", 1), batch("p2", 1)

    spill.add(first)
    assert first.rows_held == 1  # waiting for the chunk to fill
    spill.add(second)

    assert (first.rows_held, second.rows_held) == (0, 0)
    assert (len(first), len(second)) == (1, 1)  # still counts what it read


def test_a_killed_runs_leftovers_are_cleared_and_close_removes_the_folder(tmp_path):
    folder = tmp_path / "spill"
    folder.mkdir()
    (folder / "chunk-000001.arrow").write_bytes(b"left by a run that was killed")

    spill = TaskSpill(folder)
    assert list(folder.iterdir()) == []
    spill.add(batch("p1", 2))
    spill.flush()
    spill.close()

    assert not folder.exists()


def test_without_a_folder_chunks_stay_in_memory_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spill = TaskSpill(chunk_rows=2)
    for each in (batch("p1", 2), batch("p2", 1)):
        spill.add(each)

    tables = list(spill.tables(leave_out={"p2"}))

    assert [t["task_id"].to_pylist() for t in tables] == [["p1-0", "p1-1"]]
    assert spill.fingerprints.keys() == {"p1", "p2"}  # p2 was taken in, only left out
    assert list(tmp_path.iterdir()) == []


def test_a_chunk_file_is_the_size_of_its_rows(tmp_path):
    """A pass ends with an empty page; written as it came, each empty page carried the whole
    buffers of the columns built in one piece: a file several times its rows' size."""
    spill = TaskSpill(tmp_path / "spill")
    for project in range(20):
        records = [{**TASK, "task_id": f"t-{n}"} for n in range(100)]
        made = TaskBatch(f"p{project}", "cn-north-4", "run-1")
        made.add(read_page_fast(body(records))[1])
        made.add(read_page_fast(body([]))[1])
        spill.add(made)
    spill.flush()

    [written] = (tmp_path / "spill").iterdir()
    size = written.stat().st_size
    [table] = spill.tables()
    assert table.num_rows == 2000
    assert size < 1.2 * table.nbytes
