"""A crash loses no verdict and invents no alert: the detector stage, killed and restarted, against an
uninterrupted one on the same readings.

The stages run on their own threads as in the service, fed through the readings log and the scoring
queue the way the writer feeds them. A "crash" stops the thread with nothing saved: what is on disk
is the last checkpoint and the readings log, as after ``kill -9``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from waiting import wait_until

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from detector.config import MonitorConfig
from detector.types import Verdict
from ingest.messages import Reading
from plantwatch.service.checkpointing import StatePolicy
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.reading_log import ReadingLog
from plantwatch.service.scoring_queue import Batch, ScoringQueue
from plantwatch.service.writer import StageHealth, Writer
from telemetry.counters import Counters

SENSORS = ("flow", "current", "pressure", "temp")
ROWS = 2000
# The motor runs hot, cools, and runs hot again within alerts.reopen_within_s of the first alert
# resolving (60 s after the first episode): one alert, reopened.
FAULTS = ((1400, 1500), (1700, 1750))
BATCH = 100


class RecordingSink:
    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        self.verdicts.extend(verdicts)


def _readings(asset: str, seed: int) -> list[Reading]:
    rng = np.random.default_rng(seed)
    flow = 30 + np.sin(np.arange(ROWS) / 40) + rng.normal(0, 0.2, ROWS)
    X = np.column_stack(
        [flow, 2 + 0.05 * flow + rng.normal(0, 0.01, ROWS), 1 - 0.01 * flow + rng.normal(0, 0.005, ROWS)]
    )
    temp = rng.normal(60, 0.2, ROWS)
    for start, end in FAULTS:
        temp[start:end] += 3.0
    X = np.column_stack([X, temp])
    ts = (1_700_000_000 + np.arange(ROWS, dtype=np.int64)) * 10**9
    return [Reading(asset, int(ts[i]), dict(zip(SENSORS, X[i].tolist(), strict=True))) for i in range(ROWS)]


# Two assets, interleaved in every batch as one subscription delivers them.
PUMP, FAN = _readings("pump", 5), _readings("fan", 6)
STREAM = [r for pair in zip(PUMP, FAN, strict=True) for r in pair]


class Service:
    """The detector stage of one service process on ``state``: its model dir, readings log, alert store."""

    def __init__(self, state: Path, scoring_queue_readings: int = 20_000) -> None:
        self.counters = Counters()
        self.sink = RecordingSink()
        self.store = SqliteAlertStore(state / "alerts.db")
        self.log = ReadingLog(state / "models" / "readings-log")
        self.stage = DetectorStage(
            # Not joined: each batch scored alone, so the checkpoint of the baselines is older than the crash.
            ScoringQueue(scoring_queue_readings, join_readings=BATCH),
            sink=self.sink,  # type: ignore[arg-type]
            alerts=AlertManager(self.store, resolve_after_s=60, reopen_within_s=300, counters=self.counters),
            detector_config=lambda asset: MonitorConfig(baseline_rows=300),
            counters=self.counters,
            health=StageHealth(),
            stop=threading.Event(),
            models=ModelPersistence(str(state / "models")),
            reading_log=self.log,
            state=StatePolicy(checkpoint_interval_s=3600),  # only the baselines': the crash comes long after them
        )
        self.thread = threading.Thread(target=self.stage.run, daemon=True)
        self.thread.start()

    def feed(self, readings: list[Reading]) -> None:
        """As the writer does: each stored batch is logged, then handed to the detector."""
        writer = Writer(
            queue.Queue(),
            sink=None,  # type: ignore[arg-type]  # only its hand-on is used
            ack=lambda mid, qos: None,
            downstream=self.stage.upstream,
            reading_log=self.log,
            batch_size=BATCH,
            flush_interval_s=0.1,
            health=StageHealth(),
            stop=threading.Event(),
            fatal=threading.Event(),
        )
        seq = 0
        for start in range(0, len(readings), BATCH):
            batch = tuple(readings[start : start + BATCH])
            seq = self.log.append(batch)
            writer._hand_on(Batch(batch, seq))
        wait_until(lambda: self.stage.checkpoints.scored_seq >= seq, 60, f"batch {seq} scored")

    def crash(self) -> None:
        """Stop the detector thread with nothing saved (a checkpoint is only written while it runs)."""
        self.stage.stop.set()
        self.thread.join(10)
        self.stage.checkpoints.wait()  # a kill -9 comes before or after a checkpoint's commit, never in it
        self.log.close()
        self.store.close()

    def alerts(self) -> list[tuple[str, str, int, int | None]]:
        return sorted((a.asset, a.state, a.started_at_ns, a.resolved_at_ns) for a in self.store.list(limit=100))


def _by_row(verdicts: list[Verdict]) -> dict[tuple[str, int], float]:
    return {(v.asset, v.ts_ns): v.probability for v in verdicts}


@pytest.mark.parametrize(
    "crash_at",  # readings into STREAM
    [2 * 1450, 2 * 1650, 2 * 1900],
    ids=["with-an-alert-open", "between-resolving-and-reopening", "after-the-alert-resolved"],
)
def test_after_a_crash_every_verdict_is_made_and_no_alert_is_invented(tmp_path: Path, crash_at: int) -> None:
    uninterrupted = Service(tmp_path / "uninterrupted")
    uninterrupted.feed(STREAM)
    expected = _by_row(uninterrupted.sink.verdicts)
    expected_alerts = uninterrupted.alerts()
    uninterrupted.crash()
    assert [a[0] for a in expected_alerts] == ["fan", "pump"]  # one alert each, reopened and resolved

    first = Service(tmp_path / "crashed")
    first.feed(STREAM[:crash_at])
    first.crash()
    checkpointed = ModelPersistence(str(tmp_path / "crashed" / "models")).scored_seq
    assert 0 < checkpointed < crash_at // BATCH  # the checkpoint is older than the crash

    restarted = Service(tmp_path / "crashed")
    restarted.feed(STREAM[crash_at:])
    made = _by_row(first.sink.verdicts) | _by_row(restarted.sink.verdicts)
    assert made.keys() == expected.keys()  # no verdict missing
    assert np.allclose([made[k] for k in expected], list(expected.values()), rtol=0, atol=1e-12)
    assert restarted.counters.get("plantwatch_readings_rescored_total") == crash_at - checkpointed * BATCH
    assert restarted.alerts() == expected_alerts  # none invented, none lost
    restarted.crash()


def test_batches_the_writer_left_in_the_log_while_the_detector_was_behind_are_scored_once(tmp_path: Path) -> None:
    expected = Service(tmp_path / "roomy")
    expected.feed(STREAM)
    expected.crash()
    behind = Service(tmp_path / "behind", scoring_queue_readings=1)  # one batch in memory at most
    behind.feed(STREAM)  # the writer never waits: what does not fit is read back from the log
    made = [(v.asset, v.ts_ns) for v in behind.sink.verdicts]
    assert len(made) == len(set(made))  # each row scored once
    assert _by_row(behind.sink.verdicts) == _by_row(expected.sink.verdicts)
    assert behind.alerts() == expected.alerts()
    behind.crash()
