"""The smallest flagged shifts (``/healthz``) are worked out in quiet moments, and a quiet moment ends
when readings arrive: 100 assets' worked out at once had held the next readings for 3 s."""

from __future__ import annotations

import threading
from pathlib import Path

from test_crash_recovery import RecordingSink, _readings

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from detector.config import MonitorConfig
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.scoring_queue import Batch, ScoringQueue
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

ASSETS = 4


def _learned_stage(tmp_path: Path) -> tuple[DetectorStage, ScoringQueue]:
    counters, upstream = Counters(), ScoringQueue()
    stage = DetectorStage(
        upstream,
        sink=RecordingSink(),  # type: ignore[arg-type]
        alerts=AlertManager(SqliteAlertStore(tmp_path / "alerts.db"), resolve_after_s=60, counters=counters),
        detector_config=lambda asset: MonitorConfig(baseline_rows=300),
        counters=counters,
        health=StageHealth(),
        stop=threading.Event(),
    )
    for number in range(ASSETS):
        readings = [r.__class__(f"pump-{number}", r.ts_ns, r.values) for r in _readings("pump", number)[:400]]
        assert stage._score(readings)
    return stage, upstream


def _worked_out(stage: DetectorStage) -> int:
    return sum(m.smallest_shifts(work_out=False) is not None for m in stage.monitors.values())


def test_a_quiet_moment_works_out_every_due_asset(tmp_path: Path) -> None:
    stage, _ = _learned_stage(tmp_path)
    assert len(stage._shifts_due) == ASSETS and _worked_out(stage) == 0
    stage._work_out_due_shifts(idle=True)
    assert _worked_out(stage) == ASSETS and not stage._shifts_due


def test_readings_arriving_end_the_quiet_moment_after_one_asset(tmp_path: Path) -> None:
    stage, upstream = _learned_stage(tmp_path)
    upstream.put(Batch(tuple(_readings("pump", 0)[400:410])))
    stage._work_out_due_shifts(idle=True)
    assert _worked_out(stage) == 1 and len(stage._shifts_due) == ASSETS - 1
