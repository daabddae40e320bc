"""What `pip install .` gives a new user: every module's imports are installed with it, and the wheel
holds every package and the default configuration.

The import check reads the source (no install): each import of each module in the packages that
pyproject.toml installs must be the standard library, one of those packages, or a runtime dependency
of ``[project] dependencies`` (not an extra), except in the modules only an extra's feature loads
(:data:`EXTRA_ONLY`: ``source: nats``), which may import that extra's packages and which the default
service must not import. Imports under ``if TYPE_CHECKING:`` never run and are exempt. The wheel
check builds the wheel from a copy of the tree and compares its file list with the source tree.
"""

from __future__ import annotations

import ast
import email
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FIND = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
PACKAGES = sorted(find_packages(where=str(ROOT), include=FIND["include"]))
TOP_LEVEL = {name.split(".")[0] for name in PACKAGES}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return _normalise(match.group())


RUNTIME = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
EXTRAS = {
    extra: {_requirement_name(r) for r in requirements}
    for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items()
}
# Modules that only `source: nats` loads (plantwatch.service.wiring imports them when it builds a worker):
# they may import the extra `nats`; the default service never imports them.
EXTRA_ONLY = {
    "ingest/nats_source.py": "nats",
    "plantwatch/service/partitions.py": "nats",
    "plantwatch/service/scaleout.py": "nats",
}
# pydantic-settings[yaml] installs PyYAML, but settings.py imports yaml itself: it must be listed on its own.
DISTRIBUTIONS = {module: {_normalise(d) for d in dists} for module, dists in packages_distributions().items()}


def _modules() -> list[Path]:
    """Every Python file the wheel ships: the packages' modules and the alert store's Alembic migrations
    (package data: Alembic loads them by path)."""
    modules = [p for package in PACKAGES for p in (ROOT / package.replace(".", "/")).glob("*.py")]
    return sorted(modules + list((ROOT / "alerts" / "migrations").rglob("*.py")))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import that can run, at any depth (lazy imports too)."""
    found: list[tuple[int, str]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            found += [item for child in node.orelse for item in _imports(child)]
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        found += _imports(node)
    return found


def test_the_installed_packages_are_every_room_and_subpackage() -> None:
    assert {"alerts", "api", "detector", "ingest", "plantwatch", "telemetry"} == TOP_LEVEL
    on_disk = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in ROOT.glob("*/**/__init__.py")}
    assert {name for name in on_disk if name.split(".")[0] in TOP_LEVEL} == set(PACKAGES)


def test_every_import_is_the_stdlib_our_packages_or_a_runtime_dependency() -> None:
    wrong = []
    for path in _modules():
        for line, module in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if module in sys.stdlib_module_names or module in TOP_LEVEL or module == "__future__":
                continue
            providers = DISTRIBUTIONS.get(module, set())
            extra = EXTRA_ONLY.get(path.relative_to(ROOT).as_posix())
            if not providers & (RUNTIME | (EXTRAS[extra] if extra else set())):
                where = f"{path.relative_to(ROOT)}:{line}"
                wrong.append(f"{where}: {module} (from {', '.join(sorted(providers)) or 'nothing installed'})")
    assert wrong == [], "imports that [project] dependencies do not install:\n" + "\n".join(wrong)


def test_the_default_service_does_not_import_the_modules_of_an_extra() -> None:
    code = (
        "import sys; import plantwatch.cli.run, plantwatch.cli.check, plantwatch.service.wiring; "
        f"print(sorted(m for m in sys.modules if m in {sorted(p[:-3].replace('/', '.') for p in EXTRA_ONLY)!r} "
        "or m == 'nats' or m.startswith('nats.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_import_check_catches_a_dev_only_import() -> None:
    tree = ast.parse(
        "import httpx\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pytest\n"
        "def f():\n    import hypothesis\n"
    )
    assert [module for _, module in _imports(tree)] == ["httpx", "typing", "hypothesis"]
    assert not DISTRIBUTIONS["httpx"] & RUNTIME  # a dev extra, so the check above would name it


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from a clean copy of the tree (a stale build/ folder would add removed files)."""
    work = tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*_cache")
    shutil.copytree(ROOT, work / "src", ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(work / "src")],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = work.glob("plantwatch-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_every_module_the_default_config_and_the_dashboard(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    dashboard = {f"api/dashboard/{name}" for name in ("index.html", "dashboard.js", "dashboard.css")}
    expected = {str(p.relative_to(ROOT)) for p in _modules()} | {"plantwatch/default.yaml"} | dashboard
    assert expected - names == set()
    installed = {n for n in names if ".dist-info/" not in n}
    assert installed == expected, f"files in the wheel that are not in the packages: {installed - expected}"


def test_the_wheel_metadata_declares_the_runtime_dependencies_and_the_command(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = email.message_from_bytes(wheel.read(metadata)).get_all("Requires-Dist") or []
    assert {_requirement_name(r) for r in requires if "extra ==" not in r} == RUNTIME
    assert "httpx" not in {_requirement_name(r) for r in requires if "extra ==" not in r}
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "plantwatch = plantwatch.cli:main" in wheel.read(entry_points).decode()
