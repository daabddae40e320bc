"""Feedback through the live detector stage: queued by the API thread, applied by the detector thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from detector.types import Verdict
from ingest.messages import Reading
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.feedback_requests import FeedbackRequests
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

S = 1_000_000_000
T0 = 1_714_564_800 * S
SENSORS = ("a", "b", "c")


class _NullSink:
    def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        pass


def _stage(store: SqliteAlertStore, models: ModelPersistence, counters: Counters) -> DetectorStage:
    return DetectorStage(
        ScoringQueue(),
        sink=_NullSink(),  # type: ignore[arg-type]
        alerts=AlertManager(store, resolve_after_s=60, counters=counters),
        detector_config=lambda asset: MonitorConfig(baseline_rows=600),
        counters=counters,
        health=StageHealth(),
        stop=threading.Event(),
        models=models,
    )


def _readings(n: int, step_rows: slice) -> list[Reading]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, len(SENSORS)))
    X[step_rows, 1] += 4.0
    return [Reading("pump-1", T0 + i * S, dict(zip(SENSORS, X[i].tolist(), strict=True))) for i in range(n)]


def test_a_false_alarm_is_learned_by_the_detector_thread_and_saved(tmp_path: Path) -> None:
    store, counters = SqliteAlertStore(tmp_path / "alerts.db"), Counters()
    models = ModelPersistence(str(tmp_path / "models"))
    stage = _stage(store, models, counters)
    stage._process(_readings(1000, slice(700, 900)))
    feedback = stage.monitors["pump-1"].feedback_
    assert feedback is not None and not feedback.in_memory  # its baseline rows are in the model directory's file
    assert feedback.baseline32.shape[1] == 2 * len(SENSORS) and np.isfinite(feedback.baseline32).all()
    assert stage.request_feedback("fan-9", "false_alarm", T0, T0 + 10**12) is None  # unknown asset
    answer = stage.request_feedback("pump-1", "false_alarm", T0 + 700 * S, T0 + 999 * S)
    assert answer is not None and not answer.done()  # the detector thread has not looped yet
    stage._score([])  # the detector thread's next loop, which ends in a checkpoint
    stage.checkpoints.wait()  # written on the checkpoint thread
    rows = answer.result(timeout=0)
    assert rows > 100
    assert counters.get("plantwatch_feedback_total", verdict="false_alarm") == 1
    restored = AssetMonitor("pump-1", MonitorConfig(baseline_rows=600))
    assert models.restore(restored)  # saved at once: a restart keeps what the operator taught
    assert restored.feedback_ is not None and restored.feedback_.marked.shape[0] == rows
    assert np.array_equal(restored.feedback_.baseline32, feedback.baseline32)  # saved from the file
    again = stage.request_feedback("pump-1", "true_fault", T0 + 700 * S, T0 + 999 * S)
    assert again is not None
    stage._process([])
    assert again.result(timeout=0) == 0  # those rows were learned already: none left to drop
    store.close()


def test_feedback_on_an_asset_without_a_baseline_answers_with_the_reason(tmp_path: Path) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    stage = _stage(store, ModelPersistence(str(tmp_path / "models")), Counters())
    stage._process(_readings(100, slice(0, 0)))  # still learning its baseline
    answer = stage.request_feedback("pump-1", "false_alarm", T0, T0 + 99 * S)
    assert answer is not None
    stage.save_models()  # shutdown applies what is still queued
    with pytest.raises(ValueError, match="no learned baseline"):
        answer.result(timeout=0)
    store.close()


def test_a_request_its_caller_gave_up_on_is_never_applied() -> None:
    requests = FeedbackRequests()
    answer = requests.submit("pump-1", "false_alarm", 0, 1)
    assert answer.cancel()  # what the pipeline does when its wait times out
    asked: list[str] = []

    def monitor_of(asset: str) -> AssetMonitor:
        asked.append(asset)
        raise AssertionError("a cancelled request must not reach a monitor")

    requests.apply(monitor_of, lambda monitor, verdict, rows: None)
    assert asked == []


def test_a_failure_after_applying_still_answers_the_caller(tmp_path: Path) -> None:
    monitor = AssetMonitor("pump-1", MonitorConfig(baseline_rows=600))
    requests = FeedbackRequests()
    answer = requests.submit("pump-1", "true_fault", 0, 1)

    def broken(monitor: AssetMonitor, verdict: str, rows: int) -> None:
        raise RuntimeError("disk full")

    requests.apply(lambda asset: monitor, broken)
    with pytest.raises(ValueError, match="no learned baseline"):
        answer.result(timeout=0)  # the monitor refused first: still answered, the thread goes on


def test_a_false_alarm_marked_on_the_alert_is_learned_over_the_alerts_rows(tmp_path: Path) -> None:
    """POST /alerts/{id}/feedback, composed with the real detector stage: the alert's own span reaches it."""
    store, counters = SqliteAlertStore(tmp_path / "alerts.db"), Counters()
    stage = _stage(store, ModelPersistence(str(tmp_path / "models")), counters)
    stage._process(_readings(1000, slice(700, 900)))
    stage.alerts.flush()
    (alert,) = store.list()

    def feedback(asset: str, verdict: str, start_ns: int, end_ns: int) -> int | None:
        answer = stage.request_feedback(asset, verdict, start_ns, end_ns)  # type: ignore[arg-type]
        if answer is None:
            return None
        stage._process([])  # the detector thread's next loop
        return answer.result(timeout=0)

    app = create_app(ServiceHooks(store=store, counters=counters, feedback=feedback))
    with TestClient(app, base_url="http://localhost") as client:
        resp = client.post(f"/alerts/{alert.id}/feedback", json={"verdict": "false_alarm"})
    assert resp.status_code == 200 and resp.json()["rows"] > 100
    assert counters.get("plantwatch_feedback_total", verdict="false_alarm") == 1
    store.close()
