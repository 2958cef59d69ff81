"""Record checks and the epoch-millisecond conversion, against hand-computed values."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from kps_warehouse.source.records import (
    TaskBatch,
    check_record,
    fingerprints,
    read_page,
    read_page_fast,
    tasks_table,
    with_row_hashes,
)

TASK = {
    "task_id": "aee8d2fe-5484-4753-9177-5a38dc15546c",
    "operate_type": "RUNNING_RESET",
    "task_time": "1523342130000",
    "task_error_code": None,
    "task_error_msg": "Update public key error",
    "server_name": "Test",
    "server_id": "c9aa197b-a6b6-4c33-b3a6-fa0b4ec50006",
    "keypair_name": "KeyPair-xt",
}


@pytest.mark.parametrize(
    ("task_time", "expected"),
    [
        # 1523342130000 ms = 1523342130 s = 2018-04-10 06:35:30 UTC (the API page's example).
        ("1523342130000", datetime(2018, 4, 10, 6, 35, 30, tzinfo=UTC)),
        (1523342130000, datetime(2018, 4, 10, 6, 35, 30, tzinfo=UTC)),
        # The last millisecond of a UTC day stays on that day.
        ("1772409599999", datetime(2026, 3, 1, 23, 59, 59, 999_000, tzinfo=UTC)),
        ("1772409600000", datetime(2026, 3, 2, 0, 0, 0, tzinfo=UTC)),
    ],
)
def test_task_time_becomes_failed_at_in_utc_to_the_millisecond(task_time, expected):
    batch = TaskBatch("p", "cn-north-4", "run-1")
    batch.add(read_page([{**TASK, "task_time": task_time}]))

    row = tasks_table([batch]).to_pylist()[0]

    assert row["failed_at"] == expected
    assert row["task_time"] == str(int(task_time))


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ([1, 2], "record is a JSON list, not an object"),
        ({**TASK, "task_id": None}, "task_id is missing"),
        ({**TASK, "task_id": ""}, 'task_id "" is not a non-empty string'),
        ({**TASK, "task_id": 7}, "task_id 7 is not a non-empty string"),
        (
            {**TASK, "task_time": "1523342130000.5"},
            'task_time "1523342130000.5" is not epoch milliseconds',
        ),
        ({**TASK, "task_time": True}, "task_time true is not epoch milliseconds"),
        ({**TASK, "task_time": "12"}, 'task_time "12" is not epoch milliseconds'),
        ({**TASK, "keypair_name": ["a"]}, "keypair_name is a JSON list, expected a string or null"),
    ],
)
def test_a_record_that_cannot_load_as_is_says_why(record, reason):
    assert check_record(record) == reason


def test_a_task_read_twice_in_a_run_is_one_row_the_later_read_winning():
    batch = TaskBatch("p", "cn-north-4", "run-1")
    batch.add(read_page([TASK]))
    batch.add(read_page([{**TASK, "task_error_msg": "later"}]))

    rows = tasks_table([batch]).to_pylist()

    assert [r["task_error_msg"] for r in rows] == ["later"]


def test_a_record_rejected_in_several_passes_is_one_reject_and_twins_in_a_pass_are_two():
    twin, other = {"task_id": None}, {**TASK, "task_time": "soon"}
    batch = TaskBatch("p", "cn-north-4", "run-1")
    batch.start_pass()
    batch.add(read_page([twin, TASK, twin]))
    batch.start_pass()
    batch.add(read_page([twin, other]))  # the list shifted: one twin gone, a new bad record

    assert [r.reason for r in batch.rejects] == [
        "task_id is missing",
        "task_id is missing",
        'task_time "soon" is not epoch milliseconds',
    ]
    batch.keep_last_pass()  # the passes agreed: the last one is what the API lists
    assert [r.reason for r in batch.rejects] == [
        "task_id is missing",
        'task_time "soon" is not epoch milliseconds',
    ]
    assert len(batch) == 0


def test_the_rows_of_many_projects_each_name_their_project_and_repeat_only_across_them():
    first, second = (
        TaskBatch("p1", "cn-north-4", "run-1"),
        TaskBatch("p2", "ap-southeast-1", "run-1"),
    )
    first.add(read_page([TASK, {**TASK, "task_id": "t2"}]))
    first.add(read_page([{**TASK, "task_error_msg": "later"}]))  # read again: the last read wins
    second.add(read_page([TASK]))  # the same id in another project is another task
    empty = TaskBatch("p3", "cn-north-4", "run-1")
    empty.add(read_page([]))

    rows = tasks_table([empty, first, empty, second, empty]).to_pylist()

    assert [(r["project_id"], r["region"], r["task_id"], r["task_error_msg"]) for r in rows] == [
        ("p1", "cn-north-4", "t2", TASK["task_error_msg"]),
        ("p1", "cn-north-4", TASK["task_id"], "later"),
        ("p2", "ap-southeast-1", TASK["task_id"], TASK["task_error_msg"]),
    ]
    assert {r["run_id"] for r in rows} == {"run-1"}
    assert (len(first), len(second)) == (2, 1)


def test_unknown_fields_are_kept_as_json_and_change_the_version():
    plain, extended = TaskBatch("p", "r", "1"), TaskBatch("p", "r", "1")
    plain.add(read_page([TASK]))
    extended.add(read_page([{**TASK, "zone": "az1", "retries": 2}]))

    rows = with_row_hashes(tasks_table([plain, extended])).to_pylist()

    assert rows[1]["extra_fields"] == '{"retries": 2, "zone": "az1"}'
    assert rows[0]["row_hash"] != rows[1]["row_hash"]


def test_the_row_hash_is_the_md5_of_the_length_prefixed_fields():
    unusual = {
        **TASK,
        "task_id": "t-2",
        "task_error_msg": "密钥对绑定失败\u0301 🔑",  # length counts characters, not bytes
        "server_name": None,
        "keypair_name": "",
        "zone": "az1",
    }
    batch = TaskBatch("p", "cn-north-4", "run-1")
    batch.add(read_page([TASK, unusual]))

    rows = with_row_hashes(tasks_table([batch])).to_pylist()

    def expected(task, extra):
        fields = ["p", "cn-north-4", task["task_id"], task["task_time"], task["operate_type"]]
        fields += [task[f] for f in ("task_error_code", "task_error_msg", "server_name")]
        fields += [task["server_id"], task["keypair_name"], extra]
        text = "".join("-" if v is None else f"{len(v)}:{v}" for v in fields)
        return hashlib.md5(text.encode()).hexdigest()

    assert [r["row_hash"] for r in rows] == [
        expected(TASK, None),
        expected(unusual, '{"zone": "az1"}'),
    ]


def test_a_fingerprint_is_the_count_and_xor_of_row_hashes_whatever_their_order():
    tasks = [TASK, {**TASK, "task_id": "t-2"}, {**TASK, "task_id": "t-3"}]
    forward, backward, changed = (TaskBatch("p", "cn-north-4", "run-1") for _ in range(3))
    forward.add(read_page(tasks))
    backward.add(read_page(tasks[::-1]))
    changed.add(read_page([*tasks[:2], {**tasks[2], "task_error_msg": "later"}]))
    other = TaskBatch("q", "cn-north-4", "run-1")
    other.add(read_page(tasks[:1]))

    table = with_row_hashes(tasks_table([forward, other]))
    prints = fingerprints(table)

    def expected(project):
        hashes = [r["row_hash"] for r in table.to_pylist() if r["project_id"] == project]
        xor = 0
        for row_hash in hashes:  # DuckDB's md5_number reads the digest little-endian
            xor ^= int.from_bytes(hashlib.md5(row_hash.encode()).digest(), "little")
        return hashlib.md5(f"{len(hashes)}:{xor}".encode()).hexdigest()

    assert prints == {"p": expected("p"), "q": expected("q")}
    assert fingerprints(with_row_hashes(tasks_table([backward])))["p"] == prints["p"]
    assert fingerprints(with_row_hashes(tasks_table([changed])))["p"] != prints["p"]


def body(tasks, total=None, **extra):
    payload = {"total": len(tasks) if total is None else total, "tasks": tasks, **extra}
    return json.dumps(payload, ensure_ascii=False).encode()


PLAIN_TASKS = [
    TASK,
    {
        **TASK,
        "task_id": "t-2",
        "server_name": "数据库-01\u0001\n\u2028",
        "task_error_code": "KPS.0",
    },
    {k: v for k, v in TASK.items() if k != "keypair_name"} | {"task_id": "t-3"},
    {**TASK, "task_id": "t-4", "task_time": "0946684800000", "server_name": "x" * 100_000},
]


def test_a_plain_page_reads_the_same_on_the_fast_path_as_record_by_record():
    total, fast = read_page_fast(body(PLAIN_TASKS, total=7))
    careful = read_page(json.loads(body(PLAIN_TASKS))["tasks"])

    assert total == 7
    assert fast.tasks.equals(careful.tasks)
    assert fast.ids == careful.ids == [TASK["task_id"], "t-2", "t-3", "t-4"]
    assert (fast.size, fast.rejects) == (careful.size, careful.rejects) == (4, [])
    assert fast.tasks["keypair_name"].to_pylist()[2] is None


def test_an_empty_page_is_plain():
    total, page = read_page_fast(b'{"total": 0, "tasks": []}')

    assert (total, page.size, page.ids, page.tasks.num_rows) == (0, 0, [], 0)


@pytest.mark.parametrize(
    "page",
    [
        body([{**TASK, "task_time": 1523342130000}]),  # valid, but kept as text by Python
        body([{**TASK, "zone": "az1"}]),  # an unknown field goes to extra_fields
        body([TASK], page_info={}),  # an unknown top-level field
        body([TASK, None]),
        body([TASK, "text"]),
        body([{**TASK, "task_id": None}]),
        body([{**TASK, "task_id": "  "}]),
        body([{**TASK, "task_id": "\u3000"}]),  # blank to Python's strip()
        body([{**TASK, "task_time": "12"}]),
        body([{**TASK, "task_time": "4102444800000"}]),
        body([{**TASK, "task_time": " 1523342130000"}]),
        body([{**TASK, "server_id": 7}]),
        body([TASK], total="1"),
        body([TASK], total=1.5),
        b'{"total": 1, "tasks": null}',
        b'{"total": 1}',
        b'{"total": 1, "total": 2, "tasks": []}',
        b'{"total": 0, "tasks": []}\n{"total": 0, "tasks": []}',
        b'[{"total": 0, "tasks": []}]',
        b'{"total": 1, "tasks": [{"task_id": "\xff"}]}',
        body([{**TASK, "task_error_msg": "caf\u00e9"}]).replace(b"caf\xc3\xa9", b"caf\xe9"),
        body([{**TASK, "task_time": "15233421300000000000"}]),  # more digits than 64 bits hold
        b"<html>502 Bad Gateway</html>",
        b'{"total": 1, "tasks": [',
    ],
)
def test_anything_but_a_plain_page_is_left_to_the_careful_path(page):
    assert read_page_fast(page) is None
