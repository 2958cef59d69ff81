"""The notebook report: every chart drawn, no code shown, numbers that match the marts, and plain
words instead of errors or empty axes when there is nothing to show."""

from __future__ import annotations

import base64
import html as markup
import json
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import nbformat
import pytest

from kps_simulator import Simulator
from kps_warehouse.ops.warehouse import Warehouse
from kps_warehouse.report import notebook as report
from kps_warehouse.report.notebook import ReportError, render

from .conftest import FIXED_NOW_MS, query, run_cli

CHARTS = 4  # failures per day, key pairs, servers, error code × key pair
# names in Chinese and Cyrillic: matplotlib's own fonts have no glyphs for the Chinese ones
CHINESE = ("测试服务器-07", "密钥对-生产")  # server, key pair
CYRILLIC = ("Сервер-тест-03", "ключ-тест")
IMAGE = re.compile(r'<img\b[^>]*\bsrc="data:image/svg\+xml;base64,([^"]+)"')
SVG_TEXT = re.compile(r"<text\b[^>]*>([^<]*)</text>")
KPI = re.compile(r'<span\b[^>]*\bdata-kpi="(\w+)"[^>]*>([^<]*)<')


def _load(simulator: Simulator, warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kps-warehouse run` against the simulator, configured as an operator would."""
    by_region: dict[str, list[str]] = {}
    for project_id, region in simulator.projects().items():
        by_region.setdefault(region, []).append(project_id)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(warehouse))
    monkeypatch.setenv("SOURCES__KPS__ENDPOINT", simulator.endpoint)
    monkeypatch.setenv("SOURCES__KPS__PROJECTS", json.dumps(by_region))
    monkeypatch.setenv("SOURCES__KPS__CREDENTIALS__AUTH_TOKEN", simulator.token)
    assert run_cli("run", "--log-format", "text") == 0


def _failures_on_a_localised_server(n: int, names: tuple[str, str], k: int) -> list[dict]:
    """n failed tasks, five hours apart before the simulator's clock, on server `k` named
    `names[0]`, with key pair `names[1]`."""
    return [
        {
            "task_id": str(uuid.UUID(int=k * 1000 + i + 1)),
            "operate_type": "FAILED_BIND",
            "task_time": str(FIXED_NOW_MS - (i + 1) * 5 * 3_600_000 - k * 3_600_000),
            "task_error_code": "KPS.0004",
            "task_error_msg": "Response error",
            "server_name": names[0],
            "server_id": f"0c1a1150-0000-4000-8000-00000000000{k}",
            "keypair_name": names[1],
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A warehouse of two projects with months of failures, some cleared, one of them on a
    server and key pair with Chinese names and one with Cyrillic names, and a quiet project;
    and the id of the quiet one."""
    folder = tmp_path_factory.mktemp("report")
    warehouse = folder / "warehouse" / "kps.duckdb"
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        Simulator(seed=11, now_ms=FIXED_NOW_MS) as sim,
    ):
        monkeypatch.chdir(folder)
        busy = sim.add_project(tasks=700)
        sim.add_tasks(busy, _failures_on_a_localised_server(40, CHINESE, 7))
        sim.add_tasks(busy, _failures_on_a_localised_server(30, CYRILLIC, 3))
        sim.add_project(region="ap-southeast-1", tasks=400)
        quiet = sim.add_project(tasks=0)
        _load(sim, warehouse, monkeypatch)
        # users clear some failures and new ones come in: the second run records both
        sim.delete_tasks(busy, n=80)
        sim.add_tasks(busy, 12)
        _load(sim, warehouse, monkeypatch)
    yield warehouse, quiet


@pytest.fixture(scope="module")
def html(loaded: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    warehouse, _ = loaded
    out = render(warehouse, tmp_path_factory.mktemp("html") / "report.html")
    return out.read_text(encoding="utf-8")


def kpis(html: str) -> dict[str, str]:
    return dict(KPI.findall(html))


def charts(html: str) -> list[str]:
    """Each chart's SVG."""
    return [base64.b64decode(data).decode("utf-8") for data in IMAGE.findall(html)]


def chart(html: str, title: str) -> str:
    """The one chart whose title starts with `title`."""
    [svg] = [svg for svg in charts(html) if any(t.startswith(title) for t in texts(svg))]
    return svg


def texts(svg: str) -> list[str]:
    """The texts of a chart that the browser draws, in order."""
    return [markup.unescape(text).strip() for text in SVG_TEXT.findall(svg)]


def _empty_marts(warehouse: Path) -> Path:
    """A warehouse file holding the marts the report needs, empty."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema marts")
        for name in report.REQUIRED_MARTS:
            con.execute(f"create table marts.{name} (project_id varchar)")
    return warehouse


def _notebook(folder: Path, source: str) -> Path:
    """A one-cell notebook to run instead of the report."""
    path = folder / "one_cell.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


def test_every_chart_is_drawn_as_an_inline_svg(html):
    assert len(IMAGE.findall(html)) == CHARTS
    assert not re.search(r'<img\b[^>]*\bsrc="data:image/png', html)
    assert "Nothing to chart" not in html


def test_chinese_and_cyrillic_names_are_text_the_browser_draws_in_every_chart(html):
    servers = chart(html, "Servers with the most failures")
    keypairs = chart(html, "Key pairs with the most failures")
    grid = chart(html, "Failures by error code and key pair")

    for svg, names in ((servers, 0), (keypairs, 1), (grid, 1)):
        assert {CHINESE[names], CYRILLIC[names]} <= set(texts(svg))
    for svg in charts(html):
        # no text drawn here as outlines: neither DejaVu's glyphs nor Last Resort's boxes
        assert "DejaVuSans-" not in svg
        assert "LastResort" not in svg


def test_the_html_shows_no_code(html):
    body = html[html.index("<body") :]
    assert "jp-InputArea-editor" not in body
    assert "<pre" not in body
    for source in ("connect(warehouse)", "plt.subplots", "select count(*)", "# Parameters"):
        assert source not in body


def test_the_html_holds_no_warnings_or_errors(html):
    body = html[html.index("<body") :]
    assert "jp-OutputArea-stderr" not in body
    assert "Warning" not in body
    assert "Traceback" not in body


def test_the_html_loads_nothing_from_the_network(html):
    assert not re.search(r'<(script|link|img)\b[^>]*\b(src|href)="https?:', html)


def test_the_headline_numbers_match_the_marts(loaded, html):
    warehouse, _ = loaded
    [(failures, before, open_now)] = query(
        warehouse,
        """
        with latest as (select max(failed_day) as day from marts.fct_failed_tasks)
        select
            count(*) filter (where failed_day > latest.day - 30),
            count(*) filter (where failed_day <= latest.day - 30 and failed_day > latest.day - 60),
            count(*) filter (where cleared_at is null)
        from marts.fct_failed_tasks, latest
        """,
    )
    assert failures > 0 and open_now > 0

    shown = kpis(html)
    assert shown["failures"] == f"{failures:,}"
    assert shown["before"] == f"{before:,}"
    assert shown["change"] == f"{failures - before:+,}"
    assert shown["change_pct"] == f"({(failures - before) / before:+.0%})"
    assert shown["open_now"] == f"{open_now:,}"


def test_some_failures_of_the_period_are_cleared_and_timed(html):
    assert re.fullmatch(r"[\d.]+ (min|h|days)", kpis(html)["median_time_to_clear"])


def test_a_period_without_failures_says_so_instead_of_charting(loaded, tmp_path):
    warehouse, quiet = loaded

    html = render(warehouse, tmp_path / "quiet.html", days=7, projects=[quiet]).read_text()

    assert "No failures in" in html
    assert "nothing to chart" in html
    assert IMAGE.findall(html) == []
    assert kpis(html)["failures"] == "0"


def test_a_warehouse_without_failed_tasks_renders_an_empty_report(
    simulator, configure, warehouse, tmp_path
):
    simulator.add_project(tasks=0)
    simulator.add_project(region="ap-southeast-1", tasks=0)
    configure()
    assert run_cli("run", "--log-format", "text") == 0

    html = render(warehouse, tmp_path / "empty.html").read_text()

    assert "The warehouse holds no failed tasks yet" in html
    assert IMAGE.findall(html) == []
    assert kpis(html)["failures"] == "0"
    assert kpis(html)["open_now"] == "0"


def test_a_missing_warehouse_is_an_error_saying_what_to_run(tmp_path):
    with pytest.raises(ReportError, match=r"no warehouse at .*: run `kps-warehouse run` first"):
        render(tmp_path / "nowhere.duckdb", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_a_warehouse_without_marts_is_an_error_saying_what_to_run(tmp_path):
    warehouse = tmp_path / "kps.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema kps_raw; create table kps_raw.runs (run_id varchar)")

    with pytest.raises(ReportError, match=r"has no marts .*: run `kps-warehouse run` first"):
        render(warehouse, tmp_path / "report.html")


def test_a_failing_cell_is_named_with_its_error(tmp_path):
    warehouse = _empty_marts(tmp_path / "kps.duckdb")
    notebook = _notebook(tmp_path, "\n# the share of failures\nshare = 1 / 0")

    with pytest.raises(ReportError) as raised:
        render(warehouse, tmp_path / "report.html", notebook=notebook)

    assert str(raised.value) == (
        "report cell `# the share of failures` failed: ZeroDivisionError: division by zero"
    )


def test_the_notebook_runs_in_this_interpreter_and_its_kernel_stops(tmp_path):
    warehouse = _empty_marts(tmp_path / "kps.duckdb")
    notebook = _notebook(tmp_path, "import os, sys\nprint(sys.executable, os.getpid())")

    html = render(warehouse, tmp_path / "report.html", notebook=notebook).read_text()

    executable, pid = re.search(r"<pre>(\S+) (\d+)\s*</pre>", html).groups()
    assert executable == sys.executable
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)


def test_the_report_reads_the_published_run_while_a_run_loads(loaded, html, tmp_path):
    warehouse, _ = loaded
    # a run holds the lock and writes its own copy; the published file stays readable
    with Warehouse(warehouse).writing() as writer, duckdb.connect(str(writer)) as loading:
        loading.execute("begin; delete from intermediate.int_tasks__latest")
        during = render(warehouse, tmp_path / "during.html").read_text()
        loading.execute("rollback")

    assert kpis(during) == kpis(html)


def test_parameters_are_injected_after_the_parameters_cell():
    nb = nbformat.read(report.NOTEBOOK, as_version=4)
    tagged = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))

    report.inject_parameters(nb, {"days": 7, "projects": ["p1"]})

    injected = nb.cells[tagged + 1]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert injected.source == "# Parameters\ndays = 7\nprojects = ['p1']"


def test_the_notebook_is_committed_without_outputs():
    nb = nbformat.read(report.NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]

    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
