"""An idle asset leaves memory and comes back from its checkpoint with the verdicts it would have had.

The detector stage is driven batch by batch on the test's thread, with a clock of the test's for
"idle" (wall time in the service), against a stage that keeps every asset in memory.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from test_crash_recovery import BATCH, FAN, PUMP, RecordingSink
from test_mqtt_trouble import Clock

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from detector.config import MonitorConfig
from ingest.messages import Reading
from plantwatch.service.checkpointing import StatePolicy
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.pipeline import Pipeline
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

IDLE_S = 600.0


def _stage(state: Path, evict_idle_after_s: float | None) -> tuple[DetectorStage, RecordingSink, SqliteAlertStore]:
    counters, sink, store = Counters(), RecordingSink(), SqliteAlertStore(state / "alerts.db")
    stage = DetectorStage(
        ScoringQueue(),
        sink=sink,  # type: ignore[arg-type]
        alerts=AlertManager(store, resolve_after_s=60, reopen_within_s=300, counters=counters),
        detector_config=lambda asset: MonitorConfig(baseline_rows=300),
        counters=counters,
        health=StageHealth(),
        stop=threading.Event(),
        models=ModelPersistence(str(state / "models")),
        # A checkpoint after every batch: eviction follows a checkpoint.
        state=StatePolicy(checkpoint_interval_s=1e-9, evict_idle_after_s=evict_idle_after_s),
    )
    return stage, sink, store


def _batches(readings: list[Reading]) -> list[tuple[Reading, ...]]:
    return [tuple(readings[i : i + BATCH]) for i in range(0, len(readings), BATCH)]


# Both assets for 1,000 rows (batches 1-20); then the fan is off (the pump alone for 200 rows, batches
# 21-22); then both again, the fan's faults after its return.
SCHEDULE = (
    _batches([r for pair in zip(PUMP[:1000], FAN[:1000], strict=True) for r in pair])
    + _batches(PUMP[1000:1200])
    + _batches([r for pair in zip(PUMP[1200:], FAN[1000:1800], strict=True) for r in pair])
)


def _fan_verdicts(sink: RecordingSink) -> list[tuple[int, float, float, bool]]:
    return [(v.ts_ns, v.score, v.probability, v.anomaly) for v in sink.verdicts if v.asset == "fan"]


def test_an_idle_asset_leaves_memory_and_returns_with_the_verdicts_it_would_have_had(tmp_path: Path) -> None:
    kept, kept_sink, kept_store = _stage(tmp_path / "kept", evict_idle_after_s=None)
    evicting, evicting_sink, evicting_store = _stage(tmp_path / "evicting", evict_idle_after_s=IDLE_S)
    clock = Clock()
    evicting.idle.clock = clock
    away: list[bool] = []
    for seq, batch in enumerate(SCHEDULE, start=1):
        clock.now += 60.0  # a minute per batch of the schedule
        if seq == 22:  # the fan's last batch was 20: idle for more than IDLE_S by now
            clock.now += IDLE_S
        for stage in (kept, evicting):
            assert stage._score(batch, seq)
            stage.checkpoints.wait()  # written on its own thread: the next batch finds it on disk
        away.append("fan" not in evicting.monitors)
        if seq == 22:
            views = evicting.idle.snapshot(evicting.monitors)[1]
            assert views["fan"].view["in_memory"] is False and views["fan"].view["learned"] is True
            assert views["fan"].view["state"] == "normal"
            assert "pump" in evicting.monitors and "pump" not in views  # it never stopped sending
    assert away.index(True) == 21 and away[22] is False  # out for one batch, back with its next reading
    assert evicting.counters.get("plantwatch_assets_evicted_total") == 1
    assert kept.counters.get("plantwatch_assets_evicted_total") == 0

    expected, made = _fan_verdicts(kept_sink), _fan_verdicts(evicting_sink)
    assert len(made) == len(expected) > 1000
    assert [v[0] for v in made] == [v[0] for v in expected]
    assert np.allclose([v[1:3] for v in made], [v[1:3] for v in expected], rtol=0, atol=1e-12)
    assert any(v[3] for v in expected) and [v[3] for v in made] == [v[3] for v in expected]

    def alerts(store: SqliteAlertStore) -> list[tuple[str, str, int]]:
        return sorted((a.asset, a.state, a.started_at_ns) for a in store.list(limit=100))

    assert alerts(evicting_store) == alerts(kept_store) and [a[0] for a in alerts(kept_store)] == ["fan", "pump"]
    kept_store.close()
    evicting_store.close()


def test_the_api_shows_an_asset_out_of_memory_as_it_was_when_it_left(tmp_path: Path) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    counters = Counters()
    pipeline = Pipeline(
        source_factory=lambda inbound: SimpleNamespace(connected=threading.Event(), ack=lambda mid, qos: None),
        sink=RecordingSink(),  # type: ignore[arg-type]
        alerts=AlertManager(store, resolve_after_s=60, counters=counters),
        detector_config=lambda asset: MonitorConfig(baseline_rows=300),
        counters=counters,
        batch_size=100,
        flush_interval_s=0.1,
        max_in_flight=10,
        model_dir=str(tmp_path / "models"),
        state=StatePolicy(checkpoint_interval_s=1e-9, evict_idle_after_s=IDLE_S),
    )
    stage, clock = pipeline.detector, Clock()
    stage.idle.clock = clock
    for seq, batch in enumerate(SCHEDULE[:20], start=1):
        assert stage._score(batch, seq)
        stage.checkpoints.wait()
    before = {a["asset"]: a for a in pipeline.assets()}
    fan_health = pipeline.health_report()["baselines"]["fan"]
    clock.now += IDLE_S
    assert stage._score(SCHEDULE[20], 21)  # the pump's: the fan, idle and on disk, leaves memory
    assert "fan" not in stage.monitors

    assert pipeline.assets("fan") == [{**before["fan"], "in_memory": False}]
    assert [a["asset"] for a in pipeline.assets()] == ["fan", "pump"]
    report = pipeline.health_report()
    assert report["assets"] == ["fan", "pump"] and report["baselines"]["fan"] == {**fan_health, "in_memory": False}
    assert pipeline.scores("fan", None, 10) == [] and pipeline.scores("nope", None, 10) is None
    assert pipeline.readings("fan", None, 10) == {"sensors": (), "ts_ns": [], "values": []}

    assert stage._score(SCHEDULE[22], 22)  # both again: the fan is back, restored
    (fan,) = pipeline.assets("fan")
    assert fan["in_memory"] and fan["learned"] and fan["last_row_at_ns"] > before["fan"]["last_row_at_ns"]
    assert pipeline.health_report()["baselines"]["fan"]["in_memory"] is True
    store.close()
