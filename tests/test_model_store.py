from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plantwatch.service.model_store import (
    ModelStoreError,
    _stem,
    decode,
    encode,
    has_state,
    load_state,
    save_state,
    saved_assets,
)


def test_round_trip(tmp_path: Path) -> None:
    arrays = {"center": np.arange(3.0), "counts": np.array([1, 2], dtype=np.int64)}
    save_state(tmp_path, "pump-7", {"kind": "pca_spc", "rows": 300}, arrays)
    meta, loaded = load_state(tmp_path, "pump-7")  # type: ignore[misc]
    assert meta == {"kind": "pca_spc", "rows": 300}
    assert set(loaded) == set(arrays)
    assert np.array_equal(loaded["center"], arrays["center"]) and loaded["counts"].dtype == np.int64


def test_missing_asset_is_none(tmp_path: Path) -> None:
    assert load_state(tmp_path, "never-saved") is None


@pytest.mark.parametrize("asset", ["../../etc/passwd", "/abs/path", "line 1/pump,7", "..", "ä€"])
def test_hostile_asset_names_stay_inside_the_model_dir(tmp_path: Path, asset: str) -> None:
    model_dir = tmp_path / "models"
    save_state(model_dir, asset, {}, {"x": np.zeros(1)})
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.parent == model_dir for p in written)
    assert load_state(model_dir, asset) is not None


def test_names_that_sanitise_alike_do_not_collide(tmp_path: Path) -> None:
    save_state(tmp_path, "pump/1", {"v": 1}, {})
    save_state(tmp_path, "pump_1", {"v": 2}, {})
    assert load_state(tmp_path, "pump/1")[0] == {"v": 1}  # type: ignore[index]
    assert load_state(tmp_path, "pump_1")[0] == {"v": 2}  # type: ignore[index]


def _save_format_1(model_dir: Path, asset: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """As plantwatch saved a model before format 2: a JSON document and an .npz."""
    stem = _stem(asset)
    np.savez(model_dir / f"{stem}.npz", allow_pickle=False, **arrays)
    document = {"format": 1, "asset": asset, "meta": meta, "arrays": sorted(arrays)}
    (model_dir / f"{stem}.json").write_text(json.dumps(document, sort_keys=True))
    return model_dir / f"{stem}.json"


def test_every_kind_of_array_comes_back_as_it_was(tmp_path: Path) -> None:
    arrays = {
        "matrix": np.arange(12, dtype=np.float64).reshape(3, 4).T,  # not C-contiguous
        "big_endian": np.array([3, -1], dtype=">i4"),
        "flags": np.array([True, False]),
        "names": np.array(["flow", "temp"]),
        "empty": np.zeros((0, 8), dtype=np.float32),
        "scalar": np.array(2.5),
        "nan": np.array([np.nan, np.inf]),
    }
    save_state(tmp_path, "pump", {"sensors": ["flow"], "nan": math.nan}, arrays)
    meta, loaded = load_state(tmp_path, "pump")  # type: ignore[misc]
    assert meta["sensors"] == ["flow"] and math.isnan(meta["nan"])
    assert loaded.keys() == arrays.keys()
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        assert np.array_equal(loaded[name], array, equal_nan=array.dtype.kind == "f")
        assert loaded[name].flags.writeable  # a restored monitor may change its arrays in place


def test_records_and_objects_are_not_saved(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\['rec'\] has dtype"):
        save_state(tmp_path, "p", {}, {"rec": np.zeros(2, dtype=[("a", "f8"), ("b", "i4")])})


def test_a_model_saved_in_format_1_is_read_and_replaced_when_saved_again(tmp_path: Path) -> None:
    _save_format_1(tmp_path, "pump-7", {"v": 1}, {"x": np.arange(3.0)})
    assert has_state(tmp_path, "pump-7") and saved_assets(tmp_path) == {"pump-7": []}
    meta, arrays = load_state(tmp_path, "pump-7")  # type: ignore[misc]
    assert meta == {"v": 1} and np.array_equal(arrays["x"], np.arange(3.0))
    save_state(tmp_path, "pump-7", {"v": 2, "sensors": ["a"]}, {"x": np.ones(2)})
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".state"]
    assert load_state(tmp_path, "pump-7")[0] == {"v": 2, "sensors": ["a"]}  # type: ignore[index]
    assert saved_assets(tmp_path) == {"pump-7": ["a"]}


def test_pickled_arrays_in_format_1_are_refused(tmp_path: Path) -> None:
    path = _save_format_1(tmp_path, "p", {}, {"x": np.zeros(1)})
    np.savez(path.with_suffix(".npz"), x=np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelStoreError):
        load_state(tmp_path, "p")


def test_an_object_dtype_in_a_state_file_is_refused(tmp_path: Path) -> None:
    path = save_state(tmp_path, "p", {}, {"x": np.zeros(1)})
    document, data = decode(path.read_bytes())
    document["arrays"] = [["x", "|O", [1]]]
    path.write_bytes(encode(document, [np.frombuffer(data, np.uint8)]))
    with pytest.raises(ModelStoreError, match="would need pickle"):
        load_state(tmp_path, "p")


@pytest.mark.parametrize("shape", [[-1], [2.0], "2", [1]])
def test_a_layout_that_does_not_fit_its_bytes_is_refused(tmp_path: Path, shape: Any) -> None:
    path = save_state(tmp_path, "p", {}, {"x": np.arange(2.0)})
    document, data = decode(path.read_bytes())
    document["arrays"] = [["x", "<f8", shape]]
    path.write_bytes(encode(document, [np.frombuffer(data, np.uint8)]))
    with pytest.raises(ModelStoreError, match="has the shape|take 8 bytes of 16"):
        load_state(tmp_path, "p")


@pytest.mark.parametrize("cut", [0, 10, 30, -1])
def test_a_truncated_or_altered_state_file_is_refused(tmp_path: Path, cut: int) -> None:
    path = save_state(tmp_path, "p", {"k": 1}, {"x": np.arange(4.0)})
    raw = path.read_bytes()
    path.write_bytes(raw[:cut] if cut >= 0 else raw[:-9] + bytes([raw[-9] ^ 1]) + raw[-8:])
    with pytest.raises(ModelStoreError, match="cannot read the saved model of 'p'"):
        load_state(tmp_path, "p")


@pytest.mark.parametrize("version", [1, 2])
def test_foreign_metadata_is_refused(tmp_path: Path, version: int) -> None:
    if version == 1:
        path = _save_format_1(tmp_path, "p", {}, {"x": np.zeros(1)})
        document = json.loads(path.read_text())
        document["asset"] = "other"
        path.write_text(json.dumps(document))
    else:
        path = save_state(tmp_path, "p", {}, {"x": np.zeros(1)})
        document, data = decode(path.read_bytes())
        document["asset"] = "other"
        path.write_bytes(encode(document, [np.frombuffer(data, np.uint8)]))
    with pytest.raises(ModelStoreError, match="not a plantwatch model"):
        load_state(tmp_path, "p")
