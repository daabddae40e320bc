"""Model state on disk: one JSON file (metadata, scalars) and one .npz file (arrays) per asset.

Only plain arrays and JSON are ever read back: ``np.load(..., allow_pickle=False)`` and
``json.load``. Nothing is unpickled, and only files inside the configured model directory are
opened — an asset name can never point a load outside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ModelStoreError(Exception):
    """A saved model could not be read (corrupt, foreign, or from an incompatible version)."""


def _stem(asset: str) -> str:
    # Readable where possible, unique always: sanitised name plus a short hash of the exact name.
    digest = hashlib.sha256(asset.encode("utf-8")).hexdigest()[:12]
    readable = _SAFE.sub("_", asset).strip("._")[:60] or "asset"
    return f"{readable}-{digest}"


def _inside(model_dir: Path, name: str) -> Path:
    root = model_dir.resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise ModelStoreError(f"refusing to use {path}: not directly inside the model directory {root}")
    return path


def save_state(
    model_dir: str | os.PathLike[str], asset: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves a half-written model."""
    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    stem = _stem(asset)
    document = {"format": FORMAT_VERSION, "asset": asset, "meta": meta, "arrays": sorted(arrays)}
    npz_path = _inside(root, stem + ".npz")
    json_path = _inside(root, stem + ".json")
    _atomic_write(npz_path, lambda fh: np.savez(fh, allow_pickle=False, **arrays))
    _atomic_write(json_path, lambda fh: fh.write(json.dumps(document, sort_keys=True).encode("utf-8")))
    return json_path


def has_state(model_dir: str | os.PathLike[str], asset: str) -> bool:
    """Whether a model of ``asset`` was saved in ``model_dir``."""
    return _inside(Path(model_dir), _stem(asset) + ".json").exists()


def load_state(model_dir: str | os.PathLike[str], asset: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The saved (meta, arrays) of ``asset``, or None when nothing was saved for it."""
    root = Path(model_dir)
    stem = _stem(asset)
    json_path = _inside(root, stem + ".json")
    npz_path = _inside(root, stem + ".npz")
    if not json_path.exists():
        return None
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # truncated or garbled files raise BadZipFile, EOFError, ... as well
        raise ModelStoreError(
            f"cannot read the saved model of {asset!r} in {root}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(document, dict):
        raise ModelStoreError(f"{json_path} is not a plantwatch model (a JSON {type(document).__name__})")
    if document.get("format") != FORMAT_VERSION or document.get("asset") != asset:
        raise ModelStoreError(f"{json_path} is not a plantwatch model of asset {asset!r} (format {FORMAT_VERSION})")
    if sorted(arrays) != document.get("arrays"):
        raise ModelStoreError(f"{npz_path} does not hold the arrays its metadata lists")
    return document["meta"], arrays


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def saved_assets(model_dir: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Each asset with a saved model in ``model_dir`` and the sensors its model uses (empty before its
    sensors were discovered). Unreadable or foreign files are left out: restoring them reports why."""
    found: dict[str, list[str]] = {}
    root = Path(model_dir)
    for path in sorted(root.glob("*.json")) if root.is_dir() else ():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            asset, sensors = document["asset"], document["meta"].get("sensors") or []
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if document.get("format") == FORMAT_VERSION and isinstance(asset, str) and isinstance(sensors, list):
            found[asset] = [str(name) for name in sensors]
    return found
