"""Models saved by earlier versions keep loading and score the next rows exactly as that version did.

``tests/data/models-v1`` was written by the AssetMonitor of commit 6a973e2 (before the monitor was
split into parts; see its README.md): each asset's model files, the rows it scored after the restore,
and what that version answered for them. A refactor that changes a score, an explanation, or the state a
model saves next fails here.

Bit for bit where the machine computes as the recording's did, within rounding elsewhere: OpenBLAS
picks its kernels by CPU (and the machine's environment may force one, OPENBLAS_CORETYPE), and
kernels round differently. The recording's own kernels reproduce every score and every saved array
exactly; an AMD EPYC under the Haswell kernels differed by 6e-15 relative, so there scores, shares
and saved numbers are compared within ROUNDING and saved arrays by dtype and shape (the recording
keeps only their SHA-256), while a changed computation moves scores by far more.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.config import MonitorConfig
from detector.gate import NEVER
from detector.monitor import AssetMonitor
from plantwatch.service.persistence import ModelPersistence

FOLDER = Path(__file__).parent / "data" / "models-v1"
ROUNDING = 1e-12  # relative: floating-point rounding across CPUs, far below any change of the computation
EXPECTED: dict[str, Any] = json.loads((FOLDER / "expected.json").read_text())


def _digest(state: dict[str, Any]) -> dict[str, str]:
    """The state as the recording wrote it: arrays by dtype, shape and SHA-256; other values as JSON."""
    out = {}
    for key in sorted(state):
        value = state[key]
        if isinstance(value, np.ndarray):
            data = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
            out[key] = f"{value.dtype} {value.shape} {data}"
        else:
            out[key] = json.dumps(value, sort_keys=True)
    return out


# The alarm defaults of the recording's version: the entry level was ``enter`` itself (no target).
RECORDED_DEFAULTS: dict[str, Any] = {
    "false_alerts_per_week": None,
    "exit": 0.98,
    "min_duration": 5,
    "recalibrate": False,
}


def _restored(name: str) -> AssetMonitor:
    monitor = AssetMonitor(name, MonitorConfig(**(RECORDED_DEFAULTS | EXPECTED[name]["settings"])))
    assert ModelPersistence(str(FOLDER)).restore(monitor)
    return monitor


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_v1_model_restores_and_scores_the_next_rows_as_the_old_code_did(name: str) -> None:
    case = EXPECTED[name]
    monitor = _restored(name)
    assert monitor.is_warm == case["before"]["warm"]
    assert monitor.sensor_names == tuple(case["sensors"])
    after = case["after"]
    out, explanations = monitor.process_explained(np.array(after["ts"], dtype=np.int64), np.array(after["X"]))
    np.testing.assert_allclose(out.score, np.array(after["score"]), rtol=ROUNDING, atol=0, equal_nan=True)
    np.testing.assert_allclose(out.probability, np.array(after["probability"]), rtol=ROUNDING, atol=0, equal_nan=True)
    exact = np.array_equal(out.score, np.array(after["score"]), equal_nan=True)  # the recording's kernels
    assert out.anomaly.tolist() == after["anomaly"]
    assert out.status.tolist() == after["status"]
    recorded = {int(k): v for k, v in after["explanations"].items()}
    got = {
        k: [[c.sensor, c.share, c.direction, c.value, c.expected_low, c.expected_high, c.feature] for c in v]
        for k, v in ((k, why.contributions) for k, why in explanations.items())
    }
    assert got == recorded if exact else _close(got, recorded)
    assert monitor.is_warm == case["restored"]["warm"]  # (after the rows: a mid-baseline model learns)
    assert list(monitor.drifting_sensors) == case["restored"]["drifting_sensors"]
    assert monitor.baseline_advice() == case["restored"]["advice"]
    assert monitor.refits_ == case["restored"]["refits"]
    # What the next save writes: the same keys, arrays and values as the old code wrote, and keys
    # added since: a learned model's alert rate (the conservative bound for a model learned then), its
    # one-way moves and the operating state (running, no start: there was no running_when then).
    state_after = _digest(monitor.get_state())
    alert_rate = state_after.pop("alert_rate", None)
    assert (alert_rate is not None) == monitor.is_warm
    if alert_rate is not None and case["before"]["warm"]:
        assert json.loads(alert_rate)[0] == 1.0
    # feedback rows are kept by models learned now, not by those restored from then
    feedback = {key for key in state_after if key.startswith("feedback/")}
    for key in feedback:
        del state_after[key]
    assert bool(feedback) == (monitor.is_warm and not case["before"]["warm"])
    # so are the sensors its baseline saw move one way only (detector.transitions)
    assert ("one_way" in state_after) == (monitor.is_warm and not case["before"]["warm"])
    state_after.pop("one_way", None)
    assert (state_after.pop("stopped"), state_after.pop("started_at")) == ("false", str(NEVER))
    # and how often its baseline went on (detector.baseline_extensions): never, on these rows
    assert state_after.pop("baseline_extensions") == "0"
    if exact:
        assert state_after == case["restored"]["state_after"]
    else:
        assert _close(_numbers(state_after), _numbers(case["restored"]["state_after"]))


def _numbers(digest: dict[str, str]) -> dict[str, Any]:
    """A state digest with each array as its dtype and shape (its SHA-256 dropped) and JSON decoded."""
    return {
        k: v.rsplit(" ", 1)[0] if v.startswith(("float", "int", "bool", "<")) else json.loads(v)
        for k, v in digest.items()
    }


def _close(got: Any, want: Any) -> bool:
    """Equal, numbers within ROUNDING (relative), recursively through lists and dicts."""
    if isinstance(got, float) and isinstance(want, float | int) and not isinstance(want, bool):
        return bool(np.isclose(got, want, rtol=ROUNDING, atol=0, equal_nan=True))
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_close(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_close(got[k], want[k]) for k in got)
    return bool(got == want)


def test_the_v1_cases_cover_warm_mid_baseline_adaptation_episode_and_left_out_columns() -> None:
    assert {_restored(name).is_warm for name in EXPECTED} == {True, False}
    assert _restored("adapt-memory").adaptation_ is not None
    model = _restored("episode").model_
    assert model is not None and model.episode is not None
    assert _restored("drift-holdout-pot").drifting_sensors
    assert _restored("warm").alarm_.active_  # saved in the middle of an alarm
