"""`pip install .` (not editable), as pip and pipx do it: the wheel declares what the code imports,
holds the models and the notebook, and its `kps-warehouse demo` works from any folder."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"kps_warehouse", "kps_simulator"}
# The demo's seeded simulator: 4,500 tasks, then 450 deleted and 111 added before the second run.
DEMO_ROWS = {
    "select count(*) from kps_raw.runs": 8,
    "select count(*) from marts.fct_failed_tasks": 4_611,
    "select count(*) from marts.fct_failed_tasks where is_open": 4_161,
}


def _name(requirement: str) -> str:
    """A distribution's name as pip compares them: `Jinja2`, `jinja2` and `jinja_2` alike."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(source: str) -> set[str]:
    """The top-level modules a piece of Python source imports, anywhere in it."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def _notebook_code() -> str:
    notebook = json.loads((ROOT / "notebooks" / "failure_report.ipynb").read_text("utf-8"))
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    # IPython's magics (`%matplotlib inline`) are not Python
    return "\n".join(line for cell in cells for line in cell.splitlines() if line[:1] != "%")


def test_every_distribution_the_code_and_the_report_import_is_declared_and_pinned():
    sources = [path.read_text("utf-8") for path in (ROOT / "pipelines").rglob("*.py")]
    modules = set().union(*map(_imported_modules, [*sources, _notebook_code()]))
    third_party = modules - set(sys.stdlib_module_names) - FIRST_PARTY
    distributions = packages_distributions()
    imported = {_name(distributions[module][0]) for module in third_party}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    declared = {_name(requirement) for requirement in pyproject["project"]["dependencies"]}
    constraints = (ROOT / "constraints.txt").read_text("utf-8").split()
    pinned = {_name(line) for line in constraints if "==" in line}

    assert imported - declared == set()
    assert declared - pinned == set()


def _wheelhouse(wheel: Path) -> Path:
    """The locked dependencies as wheels, downloaded once per set of dependencies and pins and
    kept beside this venv, so that later installs need no network."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    locked = json.dumps(pyproject["project"]["dependencies"]).encode()
    locked += (ROOT / "constraints.txt").read_bytes()
    folder = Path(sys.prefix) / "wheelhouse" / hashlib.sha256(locked).hexdigest()[:16]
    if not folder.is_dir():
        partial = folder.with_name("partial")
        shutil.rmtree(folder.parent, ignore_errors=True)  # the wheels of older pins
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(partial)]
        subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)], check=True)
        partial.rename(folder)
    return folder


def test_the_wheel_in_a_fresh_venv_runs_the_demo_from_another_folder(tmp_path):
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "--wheel-dir", str(dist), str(ROOT)], check=True, cwd=tmp_path)
    [wheel] = dist.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("sql", "notebooks"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".sql", ".yml", ".ipynb"}:
                assert f"kps_warehouse/{path.relative_to(ROOT)}" in shipped

    # a venv of the interpreter this one was made from, filled by this venv's pip: no pip of its
    # own to install first, and no byte-compiling of every dependency
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    install = [*pip, "install", "--quiet", "--no-compile", "--no-index"]
    wheels = ["--find-links", str(_wheelhouse(wheel)), "-c", str(ROOT / "constraints.txt")]
    subprocess.run([*install, *wheels, str(wheel)], check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    demo = subprocess.run(
        [str(venv / "bin" / "kps-warehouse"), "demo"],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert demo.returncode == 0, demo.stderr
    paths = dict(re.findall(r"^(warehouse|report): +(\S+)$", demo.stdout, re.MULTILINE))
    warehouse, report = Path(paths["warehouse"]), Path(paths["report"])
    assert warehouse.parent == report.parent == elsewhere / "warehouse"
    assert report.read_text("utf-8").count('src="data:image/svg+xml;base64,') == 4  # the charts
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert {sql: con.execute(sql).fetchone()[0] for sql in DEMO_ROWS} == DEMO_ROWS
