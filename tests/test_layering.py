"""The rooms of the house and who may import whom (the developers' guide's layering rule).

detector < telemetry < ingest, alerts < api < plantwatch: a room imports only rooms below it (ingest and
alerts share a floor and do not import each other). detector/ imports numpy, scikit-learn, PyOD and the
standard library only. The message types every room reads (``detector.types``) import nothing heavy, so
the decoder on paho's thread, the alert store and the API schemas do not pull numpy in through them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {"detector": 0, "telemetry": 1, "ingest": 2, "alerts": 2, "api": 3, "plantwatch": 4}
DETECTOR_MAY_IMPORT = {"numpy", "sklearn", "pyod", "detector"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _room_modules(room: str) -> list[Path]:
    return sorted((ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("room", sorted(FLOOR))
def test_a_room_imports_only_rooms_below_it(room: str) -> None:
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in _room_modules(room)
        for line, top in _imports(path)
        if top in FLOOR and top != room and FLOOR[top] >= FLOOR[room]
    ]
    assert upward == []


def test_the_detector_room_imports_only_numpy_scikit_learn_pyod_and_the_stdlib() -> None:
    foreign = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in _room_modules("detector")
        for line, top in _imports(path)
        if top not in DETECTOR_MAY_IMPORT and top not in sys.stdlib_module_names and top != "__future__"
    ]
    assert foreign == []


@pytest.mark.parametrize("module", ["detector.types", "ingest.decode", "alerts.model"])
def test_message_types_and_the_decoder_load_without_numpy(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy')[:1])"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
