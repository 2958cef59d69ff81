""" "The last 30 days" counts the same tasks everywhere: the 30 whole UTC days ending on the latest
day with a failure, in the demo's summary, the report, the hotspots mart and the README's query."""

from __future__ import annotations

import base64
import html as markup
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kps_warehouse.ops import demo
from kps_warehouse.report import render

from .conftest import query, run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
# (key pair, server, failed at): the newest failure is on 28 Feb, so the 30 days are 30 Jan to
# 28 Feb; the one at 23:00 on 29 Jan is within 30 x 24 hours of the newest, but not in them.
FAILURES = [
    ("kp-edge", "srv-a", "2026-02-28T10:00"),
    ("kp-edge", "srv-a", "2026-01-30T01:00"),
    ("kp-edge", "srv-a", "2026-01-29T23:00"),
    ("kp-other", "srv-b", "2026-02-15T12:00"),
]
SVG = re.compile(r'<img\b[^>]*\bsrc="data:image/svg\+xml;base64,([^"]+)"')


def _task(i: int, keypair: str, server: str, at: str) -> dict:
    moment = datetime.fromisoformat(at).replace(tzinfo=UTC)
    return {
        "task_id": str(uuid.UUID(int=i + 1)),
        "operate_type": "FAILED_BIND",
        "task_time": str(int(moment.timestamp() * 1000)),
        "task_error_code": "KPS.0004",
        "task_error_msg": "Response error",
        "server_name": server,
        "server_id": str(uuid.UUID(int=100 + ord(server[-1]))),
        "keypair_name": keypair,
    }


def _readme_query() -> str:
    """The README's first query, as printed."""
    text = README.read_text(encoding="utf-8")
    start = text.index("```sql", text.index("A first query to try")) + len("```sql")
    return text[start : text.index("```", start)]


def test_the_last_30_days_count_the_same_tasks_everywhere(
    simulator, configure, warehouse, tmp_path
):
    simulator.add_project(tasks=[_task(i, *failure) for i, failure in enumerate(FAILURES)])
    configure()
    assert run_cli("run", "--log-format", "text") == 0

    assert demo.summary(warehouse) == [
        "top key pairs (30 days to 2026-02-28): kp-edge 2 (2 open), kp-other 1 (1 open)",
        "top servers (30 days to 2026-02-28): srv-a 2 (2 open), srv-b 1 (1 open)",
        "top error codes (30 days to 2026-02-28): KPS.0004 3 (3 open)",
    ]
    assert query(warehouse, _readme_query()) == [("kp-edge", 2, 2), ("kp-other", 1, 1)]

    html = render(warehouse, tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<span data-kpi="failures">3</span>' in html
    [keypairs] = [
        svg
        for svg in (base64.b64decode(data).decode() for data in SVG.findall(html))
        if "Key pairs with the most failures" in svg
    ]
    notes = re.findall(r"<text\b[^>]*>(\d+ \(\d+ open\))</text>", markup.unescape(keypairs))
    assert sorted(notes) == ["1 (1 open)", "2 (2 open)"]
