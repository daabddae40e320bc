"""Remaining-useful-life files: run-to-failure fleet logs (CSV) and saved RUL models.

CSV: header row, ',' ';' or tab separated (sniffed as for sensor logs), one row per asset per time step.
``--asset-column`` names the asset (kept verbatim as text), ``--time-column`` the time (any increasing
number: cycles, seconds). Settings columns: ``--settings-columns a,b`` or every column whose name starts
with ``setting``. Sensors: every other column whose values are all numeric, minus ``--label-column`` ones.

A model is a directory: ``model.json`` (parameters, column names, small state) + ``arrays.npz`` (plain arrays,
read with ``allow_pickle=False``). Loading only opens those two names inside the directory and refuses
anything that resolves outside it (e.g. a symlink); nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.rul import AssetHistory, RulModel
from ingest.logfile import records_with_lines, sniff_delimiter

MODEL_JSON = "model.json"
ARRAYS_NPZ = "arrays.npz"
FORMAT = "plantwatch-rul"


@dataclass
class FleetLog:
    assets: list[str]  # in order of first appearance
    histories: list[AssetHistory]
    sensor_columns: list[str]
    settings_columns: list[str]


def _is_number(text: str) -> bool:
    return _is_float(text) and math.isfinite(float(text))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_fleet_csv(
    path: str | Path,
    asset_column: str,
    time_column: str,
    settings_columns: list[str] | None = None,
    label_columns: list[str] | None = None,
    sensor_columns: list[str] | None = None,
) -> FleetLog:
    """Read a multi-asset log. With ``sensor_columns`` given (predict), exactly those columns are used."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        delimiter = sniff_delimiter(fh.readline())
        fh.seek(0)
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty file") from None
        rows, lines = [], []  # and the file line each row starts on (the header is line 1)
        for line, r in records_with_lines(reader):
            if r and any(c.strip() for c in r):
                rows.append(r)
                lines.append(line)
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: duplicate column names in the header")
    for name in (asset_column, time_column):
        if name not in header:
            raise ValueError(f"{path}: no column {name!r} (columns: {', '.join(header)})")
    if not rows:
        raise ValueError(f"{path}: no data rows")
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise ValueError(f"{path}: line {lines[i]}: {len(r)} cells, header has {len(header)}")
    col = {name: j for j, name in enumerate(header)}
    labels = set(label_columns or [])
    if settings_columns is None:
        settings_columns = [h for h in header if h.lower().startswith("setting")]
    for name in [*settings_columns, *(sensor_columns or [])]:
        if name not in col:
            raise ValueError(f"{path}: no column {name!r}")
    if sensor_columns is None:
        skip = {asset_column, time_column, *labels, *settings_columns}
        sensor_columns = [h for h in header if h not in skip and all(_is_number(r[col[h]]) for r in rows)]
    if not sensor_columns:
        raise ValueError(f"{path}: no numeric sensor columns")

    def numeric(names: list[str]) -> np.ndarray:
        try:
            return np.array([[float(r[col[n]]) for n in names] for r in rows], dtype=np.float64).reshape(
                len(rows), len(names)
            )
        except ValueError:
            i, name = next((i, n) for i, r in enumerate(rows) for n in names if not _is_float(r[col[n]]))
            cell = rows[i][col[name]]
            raise ValueError(f"{path}: line {lines[i]}: column {name!r} holds {cell!r}, not a number") from None

    X = numeric(sensor_columns)
    S = numeric(settings_columns)
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(S)):
        raise ValueError(f"{path}: sensor and settings values must be finite numbers")
    try:
        t = np.array([float(r[col[time_column]]) for r in rows])
    except ValueError:
        raise ValueError(f"{path}: time column {time_column!r} must be numeric") from None
    names = [r[col[asset_column]].strip() for r in rows]
    order: dict[str, list[int]] = {}
    for i, a in enumerate(names):
        order.setdefault(a, []).append(i)
    histories: list[AssetHistory] = []
    for a, idx in order.items():
        ix = np.array(idx)
        ix = ix[np.argsort(t[ix], kind="stable")]
        if np.any(np.diff(t[ix]) <= 0):
            raise ValueError(f"{path}: asset {a!r} has repeated time values in {time_column!r}")
        histories.append((t[ix], X[ix], S[ix] if settings_columns else None))
    return FleetLog(list(order), histories, list(sensor_columns), list(settings_columns))


# ---- model directory


def save_model(model: RulModel, directory: str | Path, sensor_columns: list[str], settings_columns: list[str]) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta, state_arrays = model.get_state()
    arrays: dict[str, Any] = dict(state_arrays)
    doc = {"format": FORMAT, "sensor_columns": sensor_columns, "settings_columns": settings_columns, "model": meta}
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise ValueError(f"array {name!r} has dtype object; refusing to save it")
    np.savez_compressed(d / ARRAYS_NPZ, allow_pickle=False, **arrays)
    (d / MODEL_JSON).write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")


def model_problem(directory: Path) -> str | None:
    """Why ``directory`` is not a model folder ``rul fit`` wrote, in a few words, or None if it looks like one."""
    written_by = "`plantwatch rul fit TRAIN.csv --out DIR ...`"
    if not directory.exists():
        return f"no such folder; write one with {written_by}"
    if not directory.is_dir():
        return f"is a file, not a model folder written by {written_by}"
    for name in (MODEL_JSON, ARRAYS_NPZ):
        if not (directory / name).is_file():
            return f"has no {name}; is it a folder written by {written_by}?"
    return None


def _inside(directory: Path, name: str) -> Path:
    base = directory.resolve(strict=True)
    target = (directory / name).resolve(strict=True)
    if target.parent != base or not target.is_file():
        raise ValueError(f"{directory / name} resolves outside the model directory {base}; refusing to load it")
    return target


def load_model(directory: str | Path) -> tuple[RulModel, list[str], list[str]]:
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"model directory {d} not found")
    doc: Any = json.loads(_inside(d, MODEL_JSON).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{d / MODEL_JSON} is not a plantwatch RUL model")
    with np.load(_inside(d, ARRAYS_NPZ), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    model = RulModel.from_state(doc["model"], arrays)
    return model, [str(c) for c in doc["sensor_columns"]], [str(c) for c in doc["settings_columns"]]
