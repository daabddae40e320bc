"""Model state on disk: one file per asset, a JSON document (metadata, scalars, the arrays' layout)
followed by the arrays' raw bytes.

Only plain arrays and JSON are ever read back: the arrays are plain dtypes rebuilt from their bytes
(``np.frombuffer``), the document is ``json.loads``. Nothing is unpickled, and only files inside the
configured model directory are opened — an asset name can never point a load outside it.

Format 2 replaced format 1 (a ``.json`` and an ``.npz`` per asset, which is still read): ``np.savez``
spent ~1 ms of interpreter time on an asset's 25 arrays (a zip member each), format 2 ~0.15 ms. A
checkpoint of 1,000 changed assets took the checkpoint thread 2,113 ms, now 876, mostly fsyncs
(``python bench/recovery_cost.py --assets 100 1000 --batches 20``; docs/throughput.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import descr_to_dtype, dtype_to_descr

FORMAT_VERSION = 2
SUFFIX = ".state"
_V1 = 1  # a .json document and an .npz of arrays (read, never written)
_MAGIC = b"PLANTWATCH-STATE"
_PREFIX = struct.Struct("<16sII")  # magic, the document's length, crc32 of the document and the arrays' bytes
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
    path = _inside(root, stem + SUFFIX)
    layout = [[name, _descr(name, arrays[name]), list(arrays[name].shape)] for name in sorted(arrays)]
    document = {"format": FORMAT_VERSION, "asset": asset, "meta": meta, "arrays": layout}
    _atomic_write(path, lambda fh: fh.write(encode(document, [arrays[name] for name in sorted(arrays)])))
    for older in (".json", ".npz"):  # format 1, carried into this checkpoint from an older one
        (root / f"{stem}{older}").unlink(missing_ok=True)  # a sanitised name, and unlink follows no link
    return path


def has_state(model_dir: str | os.PathLike[str], asset: str) -> bool:
    """Whether a model of ``asset`` was saved in ``model_dir``."""
    root, stem = Path(model_dir), _stem(asset)
    return _inside(root, stem + SUFFIX).exists() or _inside(root, stem + ".json").exists()


def load_state(model_dir: str | os.PathLike[str], asset: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The saved (meta, arrays) of ``asset``, or None when nothing was saved for it."""
    root = Path(model_dir)
    stem = _stem(asset)
    path = _inside(root, stem + SUFFIX)
    if not path.exists():
        return _load_v1(root, stem, asset)
    try:
        document, data = decode(path.read_bytes())
        arrays = _arrays(document.get("arrays"), data) if isinstance(document, dict) else {}
    except Exception as exc:  # a truncated or garbled file
        raise ModelStoreError(
            f"cannot read the saved model of {asset!r} in {root}: {type(exc).__name__}: {exc}"
        ) from exc
    return _checked(path, document, asset, FORMAT_VERSION), arrays


def encode(document: dict[str, Any], arrays: list[np.ndarray]) -> bytes:
    """A state file's bytes: its prefix, ``document`` as JSON, and ``arrays``' bytes in C order."""
    header = json.dumps(document, sort_keys=True).encode("utf-8")
    data = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    return _PREFIX.pack(_MAGIC, len(header), zlib.crc32(data, zlib.crc32(header))) + header + data


def decode(raw: bytes) -> tuple[Any, bytes]:
    """The document and the arrays' bytes of a state file; ValueError when it is not one, or damaged."""
    length, crc = _prefix(raw[: _PREFIX.size])
    header, data = raw[_PREFIX.size : _PREFIX.size + length], raw[_PREFIX.size + length :]
    if len(header) != length or zlib.crc32(data, zlib.crc32(header)) != crc:
        raise ValueError("damaged (its checksum does not match: truncated or altered)")
    return json.loads(header), data


def _document(path: Path) -> Any:
    """A state file's JSON document alone: its arrays (and their checksum, which a restore checks) are
    left unread."""
    with open(path, "rb") as file:
        length = _prefix(file.read(_PREFIX.size))[0]
        return json.loads(file.read(length))


def _prefix(prefix: bytes) -> tuple[int, int]:
    """The document's length and the checksum a state file's prefix holds; ValueError when it is none."""
    if len(prefix) < _PREFIX.size:
        raise ValueError(f"{len(prefix)} bytes: too short for a plantwatch state file")
    magic, length, crc = _PREFIX.unpack(prefix)
    if magic != _MAGIC:
        raise ValueError("not a plantwatch state file")
    return length, crc


def _arrays(layout: Any, data: bytes) -> dict[str, np.ndarray]:
    if not isinstance(layout, list):
        raise ValueError("its document lists no arrays")
    arrays, offset = {}, 0
    for name, descr, shape in layout:
        dtype = descr_to_dtype(descr)
        if dtype.hasobject:
            raise ValueError(f"array {name!r} would need pickle")
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError(f"array {name!r} has the shape {shape!r}")
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(data, dtype, count, offset).reshape(shape).copy()
        offset += count * dtype.itemsize
    if offset != len(data):
        raise ValueError(f"its arrays take {offset} bytes of {len(data)}")
    return arrays


def _load_v1(root: Path, stem: str, asset: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """A model saved by plantwatch before format 2: a JSON document and an ``.npz``."""
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
    meta = _checked(json_path, document, asset, _V1)
    if sorted(arrays) != document.get("arrays"):
        raise ModelStoreError(f"{npz_path} does not hold the arrays its metadata lists")
    return meta, arrays


def _checked(path: Path, document: Any, asset: str, version: int) -> dict[str, Any]:
    """The document's meta, once it is a plantwatch model of ``asset`` in format ``version``."""
    if not isinstance(document, dict):
        raise ModelStoreError(f"{path} is not a plantwatch model (a JSON {type(document).__name__})")
    if document.get("format") != version or document.get("asset") != asset:
        raise ModelStoreError(f"{path} is not a plantwatch model of asset {asset!r} (format {version})")
    meta: dict[str, Any] = document["meta"]
    return meta


def _descr(name: str, array: np.ndarray) -> str:
    descr = dtype_to_descr(array.dtype)
    if not isinstance(descr, str) or array.dtype.hasobject:  # records or objects: not plain values
        raise TypeError(f"state[{name!r}] has dtype {array.dtype}; only plain dtypes are saved")
    return descr


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
    paths = sorted([*root.glob("*.json"), *root.glob(f"*{SUFFIX}")]) if root.is_dir() else []
    for path in paths:  # a format 2 file sorts after format 1 of the same asset, and wins
        try:
            document = _document(path) if path.suffix == SUFFIX else json.loads(path.read_bytes())
            asset, sensors = document["asset"], document["meta"].get("sensors") or []
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if document.get("format") in (_V1, FORMAT_VERSION) and isinstance(asset, str) and isinstance(sensors, list):
            found[asset] = [str(name) for name in sensors]
    return found
