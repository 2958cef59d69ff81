"""Execute the notebook report on a snapshot of the warehouse and write it as one HTML file.

Why a snapshot: DuckDB lets one process write a file, and while a writer holds it a read-only
open fails ("Could not set lock on file"); a reader holding it in turn makes the next
`kps-warehouse run` fail before it extracts anything. So the report never opens the warehouse
itself: it copies the file (and its write-ahead log, if there is one) to a temporary folder and
reads the copy. A copy is consistent when no write is in progress while it is taken, so the
file's size and modification time are compared before and after copying, the copy must open and
hold the marts, and otherwise it is taken again after a short wait, a few times, before the
report gives up and says why. (A run that publishes a new file by renaming it over the old one
is safe too: a copy already under way keeps reading the old file, and the changed stamps make
the next attempt copy the new one.)

The notebook runs in a kernel started from this very interpreter (a kernel spec written to the
temporary folder), so a `python3` kernel registered elsewhere on the machine cannot pick another
Python without the project's packages. Its parameters are injected the way papermill does it: a
cell after the one tagged `parameters`. The HTML holds the notebook's outputs only, no code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import nbformat
from jinja2 import DictLoader
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter

# `notebooks/` ships in the wheel as this package's data (see pyproject.toml).
NOTEBOOK = Path(str(resources.files("kps_warehouse.notebooks"))) / "failure_report.ipynb"
DEFAULT_DAYS = 30
REQUIRED_MARTS = ("dim_projects", "fct_failed_tasks", "failure_trend_error_code", "failure_spikes")
SNAPSHOT_ATTEMPTS = 5
SNAPSHOT_WAIT_SECONDS = 0.5
CELL_TIMEOUT_SECONDS = 300
KERNEL_NAME = "kps-report-python"
TITLE = "Failed key-pair tasks"

# The lab template, minus the scripts it would fetch from a CDN (require.js, MathJax, Mermaid):
# the report is one file that opens offline, and its text holds no formulas or diagrams.
_TEMPLATE = "kps_report.html.j2"
_TEMPLATES = {
    _TEMPLATE: (
        "{%- extends 'lab/index.html.j2' -%}\n"
        "{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}\n"
        "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}\n"
        "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n"
        "{%- block extra_css -%}<style>main { max-width: 72rem; margin: 0 auto; }</style>"
        "{%- endblock extra_css -%}\n"
    )
}


class ReportError(Exception):
    """The report could not be made; the message is one line a person can act on."""


def render(
    warehouse: Path,
    out: Path,
    *,
    days: int | None = None,
    projects: list[str] | None = None,
    notebook: Path = NOTEBOOK,
) -> Path:
    """Run the report notebook on a snapshot of `warehouse` and write it to `out` as HTML."""
    if days is not None and days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    warehouse = Path(warehouse)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="kps-report-") as folder:
        work = Path(folder)
        snapshot = take_snapshot(warehouse, work / "snapshot")
        parameters = {
            "warehouse": str(snapshot),
            "projects": list(projects or []),
            "days": days or DEFAULT_DAYS,
        }
        executed = execute(notebook, parameters, work)
    html = to_html(executed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def take_snapshot(warehouse: Path, folder: Path) -> Path:
    """A consistent copy of the warehouse in `folder` that holds the marts the report reads."""
    if not warehouse.is_file():
        raise ReportError(f"no warehouse at {warehouse}: run `kps-warehouse run` first")
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / warehouse.name
    why = ""
    for attempt in range(SNAPSHOT_ATTEMPTS):
        if attempt:
            time.sleep(SNAPSHOT_WAIT_SECONDS)
        before = _stamp(warehouse)
        _copy(warehouse, copy)
        if _stamp(warehouse) != before:
            why = (
                "it changed while it was being copied, so a run is probably writing to it: "
                "try again when the run has finished"
            )
            continue
        try:
            missing = _missing_marts(copy)
        except duckdb.Error as error:
            why = f"the copy would not open: {_one_line(str(error))}"
            continue
        if missing:
            raise ReportError(
                f"warehouse {warehouse} has no marts ({', '.join(missing)} missing): "
                "run `kps-warehouse run` first"
            )
        return copy
    raise ReportError(
        f"no consistent snapshot of {warehouse} in {SNAPSHOT_ATTEMPTS} attempts: {why}"
    )


def execute(notebook: Path, parameters: dict[str, Any], folder: Path) -> nbformat.NotebookNode:
    """The notebook with `parameters` injected, executed in `folder` by this interpreter."""
    nb = inject_parameters(nbformat.read(notebook, as_version=4), parameters)
    client = NotebookClient(
        nb,
        km=_kernel_manager(folder),
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(folder)}},
    )
    # the kernel's own chatter (debugger warnings, crashes) goes to a log, not to our stderr
    with (folder / "kernel.log").open("wb") as log:
        try:
            # the client shuts down only kernels it started itself, unless told to
            client.execute(cleanup_kc=True, env=_kernel_environment(), stdout=log, stderr=log)
        except CellExecutionError as error:
            raise ReportError(
                f"report cell {_failed_cell(nb)} failed: {_cell_error(error)}"
            ) from error
        except CellTimeoutError as error:
            raise ReportError(
                f"report cell {_failed_cell(nb)} took longer than {CELL_TIMEOUT_SECONDS} s"
            ) from error
        except DeadKernelError as error:
            tail = _last_line(folder / "kernel.log")
            raise ReportError(f"the report's Python kernel died: {tail or error}") from error
        except RuntimeError as error:
            # jupyter_client says a kernel did not start with a RuntimeError
            tail = _last_line(folder / "kernel.log")
            raise ReportError(
                f"the report's Python kernel did not start: {tail or _one_line(str(error))}"
            ) from error
    return nb


def inject_parameters(
    nb: nbformat.NotebookNode, parameters: dict[str, Any]
) -> nbformat.NotebookNode:
    """`nb` with a cell assigning `parameters` right after the cell tagged `parameters`."""
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    lines = ["# Parameters", *(f"{name} = {value!r}" for name, value in parameters.items())]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    # as papermill does: without a tagged cell the values come first, to be overwritten
    position = tagged[0] + 1 if tagged else 0
    nb.cells.insert(position, cell)
    return nb


def to_html(nb: nbformat.NotebookNode) -> str:
    """The executed notebook as one HTML file: outputs and text only, no code, no prompts."""
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader(_TEMPLATES)],
        template_file=_TEMPLATE,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": TITLE}})
    return html


def _kernel_manager(folder: Path) -> AsyncKernelManager:
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor} (report)",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(spec.parent)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def _kernel_environment() -> dict[str, str]:
    env = dict(os.environ)
    # a backend set for scripts (MPLBACKEND=Agg) would silently drop every chart
    env.pop("MPLBACKEND", None)
    # ipykernel's debugger otherwise warns about frozen modules on every start
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def _stamp(warehouse: Path) -> tuple[tuple[int, int] | None, ...]:
    def stamp(path: Path) -> tuple[int, int] | None:
        try:
            status = path.stat()
        except FileNotFoundError:
            return None
        return status.st_size, status.st_mtime_ns

    return stamp(warehouse), stamp(_wal(warehouse))


def _copy(warehouse: Path, copy: Path) -> None:
    shutil.copyfile(warehouse, copy)
    _wal(copy).unlink(missing_ok=True)
    # committed changes not yet checkpointed live in the log; DuckDB replays it on open
    if _wal(warehouse).exists():
        # checkpointed meanwhile, the log gone: the stamps will tell
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(_wal(warehouse), _wal(copy))


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _missing_marts(copy: Path) -> list[str]:
    # opened for writing: it is our own copy, and this folds the log in once for the notebook
    with duckdb.connect(str(copy)) as con:
        present = {
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        }
        con.execute("checkpoint")
    return [f"marts.{name}" for name in REQUIRED_MARTS if name not in present]


def _failed_cell(nb: nbformat.NotebookNode) -> str:
    for cell in nb.cells:
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            lines = [line for line in cell.source.splitlines() if line.strip()]
            first = lines[0].strip() if lines else ""
            return f"`{first[:80]}`"
    return "(unknown)"


def _cell_error(error: CellExecutionError) -> str:
    if error.ename:
        return f"{error.ename}: {_one_line(error.evalue)}" if error.evalue else error.ename
    return _one_line(str(error))


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1] if lines else ""
