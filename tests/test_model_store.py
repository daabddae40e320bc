from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plantwatch.service.model_store import ModelStoreError, load_state, save_state


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


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    path = save_state(tmp_path, "p", {}, {"x": np.zeros(1)})
    np.savez(path.with_suffix(".npz"), x=np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelStoreError):
        load_state(tmp_path, "p")


def test_foreign_metadata_is_refused(tmp_path: Path) -> None:
    path = save_state(tmp_path, "p", {}, {"x": np.zeros(1)})
    document = json.loads(path.read_text())
    document["asset"] = "other"
    path.write_text(json.dumps(document))
    with pytest.raises(ModelStoreError, match="not a plantwatch model"):
        load_state(tmp_path, "p")
