"""Execute the notebook report over the published warehouse and write it as one HTML file.

The notebook reads the published file read-only with `kps_warehouse.connect`, as any analyst
does: runs never write that file in place (they load a writer copy and rename it over the
published one, see `ops/warehouse.py`), so a report made while a run loads or publishes reads
one whole run, the newest when it opened, and never blocks the run.

The notebook runs in a kernel started from this very interpreter (a kernel spec written to the
temporary folder), so a `python3` kernel registered elsewhere on the machine cannot pick another
Python without the project's packages. Its parameters are injected the way papermill does it: a
cell after the one tagged `parameters`. The HTML holds the notebook's outputs only, no code.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
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

from kps_warehouse.connection import connect

# `notebooks/` ships in the wheel as this package's data (see pyproject.toml).
NOTEBOOK = Path(str(resources.files("kps_warehouse.notebooks"))) / "failure_report.ipynb"
DEFAULT_DAYS = 30
REQUIRED_MARTS = ("dim_projects", "fct_failed_tasks", "failure_trend_error_code", "failure_spikes")
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
    """Run the report notebook on `warehouse` and write it to `out` as HTML."""
    if days is not None and days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    warehouse = Path(warehouse).absolute()
    out = Path(out)
    check_marts(warehouse)
    with tempfile.TemporaryDirectory(prefix="kps-report-") as folder:
        parameters = {
            "warehouse": str(warehouse),
            "projects": list(projects or []),
            "days": days or DEFAULT_DAYS,
        }
        executed = execute(notebook, parameters, Path(folder))
    html = to_html(executed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def check_marts(warehouse: Path) -> None:
    """Raises ReportError unless `warehouse` opens read-only and holds the marts the report
    reads."""
    if not warehouse.is_file():
        raise ReportError(f"no warehouse at {warehouse}: run `kps-warehouse run` first")
    try:
        with connect(warehouse) as con:
            present = {
                name
                for (name,) in con.execute(
                    "select table_name from information_schema.tables "
                    "where table_catalog = current_database() and table_schema = 'marts'"
                ).fetchall()
            }
    except duckdb.Error as error:
        raise ReportError(f"cannot read warehouse {warehouse}: {_one_line(str(error))}") from error
    missing = [f"marts.{name}" for name in REQUIRED_MARTS if name not in present]
    if missing:
        raise ReportError(
            f"warehouse {warehouse} has no marts ({', '.join(missing)} missing): "
            "run `kps-warehouse run` first"
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
