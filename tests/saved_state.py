"""A monitor's saved state as the service stores it (``np.savez`` + JSON, no pickle), read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from detector.base import join_state, split_state


def through_disk(state: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    arrays, meta = split_state(state)
    np.savez(tmp_path / "state.npz", allow_pickle=False, **arrays)
    (tmp_path / "state.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "state.npz", allow_pickle=False) as data:
        loaded = {k: data[k] for k in data.files}
    return join_state(loaded, json.loads((tmp_path / "state.json").read_text()))
