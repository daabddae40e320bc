"""The readings log and the checkpoints: what a crash leaves on disk reads back whole or not at all."""

from __future__ import annotations

import json
import math
import queue
from pathlib import Path

import numpy as np
import pytest

from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from ingest.messages import Reading
from plantwatch.service.checkpointing import Checkpointing
from plantwatch.service.checkpoints import CHECKPOINTS, Checkpoints
from plantwatch.service.persistence import ModelPersistence, Snapshot
from plantwatch.service.reading_log import ReadingLog


def _batch(start: int, n: int = 3) -> tuple[Reading, ...]:
    return tuple(Reading("pump-1", start + i, {"flow": float(i), "temp": 60.5}, {"line": "L1"}) for i in range(n))


def test_batches_read_back_in_order_with_their_numbers(tmp_path: Path) -> None:
    log = ReadingLog(tmp_path)
    assert [log.append(_batch(i * 10)) for i in range(5)] == [1, 2, 3, 4, 5]
    log.append((Reading("fan", 7, {"vib": math.nan}),))
    read = list(log.after(3))
    assert [seq for seq, _ in read] == [4, 5, 6]
    assert read[0][1] == _batch(30)  # asset, stamp, values and tags as they were
    assert math.isnan(read[2][1][0].values["vib"])
    log.close()
    assert ReadingLog(tmp_path).last_seq == 6  # a restart numbers on


def test_a_torn_last_record_ends_the_log_and_the_next_process_numbers_on_from_before_it(tmp_path: Path) -> None:
    log = ReadingLog(tmp_path)
    for i in range(3):
        log.append(_batch(i * 10))
    log.close()
    (segment,) = tmp_path.glob("*.log")
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])  # killed while appending batch 3: it was never acknowledged
    again = ReadingLog(tmp_path)
    assert again.last_seq == 2
    assert again.append(_batch(100)) == 3
    assert [(seq, batch[0].ts_ns) for seq, batch in again.after(0)] == [(1, 0), (2, 10), (3, 100)]


def test_a_torn_first_record_of_a_segment_is_overwritten_not_appended_to(tmp_path: Path) -> None:
    log = ReadingLog(tmp_path)
    log.append(_batch(0))
    log.discard_through(1)  # a checkpoint covered batch 1: its segment goes, the next starts at 2
    log.append(_batch(10))
    log.close()
    (segment,) = tmp_path.glob("*.log")
    assert segment.name == f"{2:016d}.log"
    segment.write_bytes(segment.read_bytes()[:7])  # torn inside its header
    again = ReadingLog(tmp_path)
    assert again.last_seq == 1
    assert again.append(_batch(20)) == 2
    assert [(seq, batch[0].ts_ns) for seq, batch in again.after(0)] == [(2, 20)]


def test_a_checkpoint_discards_only_the_segments_it_covers(tmp_path: Path) -> None:
    log = ReadingLog(tmp_path, segment_bytes=1)  # a segment per batch
    log.discard_through(0)  # nothing logged yet: nothing to do
    for i in range(6):
        log.append(_batch(i * 10))
    log.discard_through(4)
    assert [seq for seq, _ in log.after(0)] == [5, 6]
    log.discard_through(6)
    assert list(log.after(0)) == [] and list(tmp_path.glob("*.log")) == []
    assert log.append(_batch(70)) == 7


def test_any_stretch_reads_back_the_same_whether_the_log_seeks_to_it_or_reads_its_segments_from_the_start(
    tmp_path: Path,
) -> None:
    log = ReadingLog(tmp_path, segment_bytes=400)  # a few records a segment
    for i in range(12):
        log.append(_batch(i * 10, n=1 + i % 4))
    log.discard_through(5)
    for i in range(12, 20):
        log.append(_batch(i * 10))
    by_offset = {(seq, through): list(log.after(seq, through)) for seq in range(22) for through in (seq + 1, 20, None)}
    earlier = ReadingLog(tmp_path)  # another process: it knows no offsets and reads each segment from its start
    assert by_offset == {(seq, through): list(earlier.after(seq, through)) for seq, through in by_offset}
    assert [n for n, _ in by_offset[(8, 9)]] == [9] and by_offset[(8, 20)][0][1] == _batch(80, n=1)
    assert len({p.name for p in tmp_path.glob("*.log")}) > 3


def test_reading_up_to_the_last_batch_appended_leaves_the_one_being_appended_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = ReadingLog(tmp_path)
    for i in range(3):
        log.append(_batch(i * 10))
    (segment,) = tmp_path.glob("*.log")
    with segment.open("ab") as half_written:  # the writer, mid-append of batch 4
        half_written.write(b"\x40\x00\x00")
    assert [seq for seq, _ in log.after(2, through=3)] == [3]
    assert [seq for seq, _ in log.after(0, through=1)] == [1]
    assert "torn" not in caplog.text  # only a read past ``through`` would have seen it


def _warm_monitor(asset: str) -> AssetMonitor:
    monitor = AssetMonitor(asset, MonitorConfig(baseline_rows=300), ("a", "b"))
    rng = np.random.default_rng(1)
    monitor.process_arrays((1_700_000_000 + np.arange(400, dtype=np.int64)) * 10**9, rng.normal(size=(400, 2)))
    assert monitor.is_warm
    return monitor


def _cold(asset: str) -> AssetMonitor:
    return AssetMonitor(asset, MonitorConfig(baseline_rows=300), ("a", "b"))


def test_a_checkpoint_carries_the_models_of_assets_that_did_not_change_and_models_saved_before_checkpoints(
    tmp_path: Path,
) -> None:
    legacy = ModelPersistence(str(tmp_path))
    legacy.save(_warm_monitor("old-pump"))  # a model directory from before checkpoints
    models = ModelPersistence(str(tmp_path))
    fan = _warm_monitor("fan")
    assert models.checkpoint({"fan": fan}, ["fan"], None, scored_seq=12)
    assert models.checkpoint({"fan": fan}, [], None, scored_seq=15)  # nothing changed since
    restarted = ModelPersistence(str(tmp_path))
    assert restarted.scored_seq == 15 and restarted.model_dir.parent == tmp_path / CHECKPOINTS
    for asset in ("old-pump", "fan"):
        monitor = _cold(asset)
        assert restarted.restore(monitor) and monitor.is_warm
    assert len(list((tmp_path / CHECKPOINTS).iterdir())) == 1  # older generations are deleted


def test_a_checkpoint_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    models = ModelPersistence(str(tmp_path))
    assert models.checkpoint({"fan": _warm_monitor("fan")}, ["fan"], None, scored_seq=3)
    building = Checkpoints(tmp_path).begin()  # killed while building the next one: never renamed
    (building / "manifest.json").write_text(json.dumps({"generation": 2, "scored_seq": 9}))
    half = tmp_path / CHECKPOINTS / f"{7:012d}"  # or renamed by hand without a manifest
    half.mkdir()
    restarted = ModelPersistence(str(tmp_path))
    assert restarted.scored_seq == 3
    monitor = _cold("fan")
    assert restarted.restore(monitor) and monitor.is_warm
    assert restarted.checkpoint({}, [], None, scored_seq=4)  # the next one builds over the leftovers
    assert ModelPersistence(str(tmp_path)).scored_seq == 4


def test_after_a_checkpoint_covering_the_whole_log_a_restart_numbers_on_above_it(tmp_path: Path) -> None:
    """A graceful stop checkpoints every batch scored and deletes every segment: the batches of the next
    start must number above the checkpoint's, or the detector takes them for scored already."""
    log = ReadingLog(tmp_path / "log")
    checkpointing = Checkpointing(ModelPersistence(str(tmp_path)), log)
    for i in range(4):
        checkpointing.scored(log.append(_batch(i * 10)))
    assert checkpointing.write({}, None)
    log.close()
    assert list((tmp_path / "log").iterdir()) == []  # every segment covered, so deleted
    again = ReadingLog(tmp_path / "log")
    restarted = Checkpointing(ModelPersistence(str(tmp_path)), again)
    assert restarted.scored_seq == 4
    assert again.append(_batch(50)) == 5
    assert restarted.unscored_range == (5, 4)  # nothing to score again


class HeldWrites(ModelPersistence):
    """Writes each checkpoint only once the test lets it, with the outcome the test gives (``outcomes``)."""

    def __init__(self, model_dir: str) -> None:
        super().__init__(model_dir)
        self.outcomes: queue.Queue[bool] = queue.Queue()

    def write(self, snapshot: Snapshot, scored_seq: int) -> bool:
        succeed = self.outcomes.get(timeout=30)
        return super().write(snapshot, scored_seq) if succeed else False


def test_the_detector_goes_on_while_a_checkpoint_is_written_and_a_failed_one_is_taken_again(tmp_path: Path) -> None:
    models = HeldWrites(str(tmp_path))
    checkpoints = Checkpointing(models, None, interval_s=1e-9)
    fan = _warm_monitor("fan")
    checkpoints.changed.add("fan")
    checkpoints.scored(4)
    assert not checkpoints.now_and_then({"fan": fan}, None)  # started, not written: the caller goes on
    assert checkpoints.dirty == {"fan"} and not checkpoints.changed
    checkpoints.scored(5)
    assert not checkpoints.now_and_then({"fan": fan}, None)  # one at a time: still the first
    models.outcomes.put(False)  # a full disk, say
    checkpoints.wait()
    assert not checkpoints.now_and_then({"fan": fan}, None)  # failed: the fan goes into the next one
    assert checkpoints.dirty == {"fan"}
    models.outcomes.put(True)
    checkpoints.wait()
    assert checkpoints.now_and_then({"fan": fan}, None)  # written
    assert not checkpoints.dirty and ModelPersistence(str(tmp_path)).scored_seq == 5
    models.outcomes.put(True)  # the one the last call started
    checkpoints.close()


def test_the_written_copy_is_the_state_when_the_checkpoint_was_taken(tmp_path: Path) -> None:
    models = HeldWrites(str(tmp_path))
    checkpoints = Checkpointing(models, None, interval_s=1e-9)
    fan = _warm_monitor("fan")
    checkpoints.changed.add("fan")
    checkpoints.now_and_then({"fan": fan}, None)
    fan.reset()  # relearning in place while the checkpoint is written
    models.outcomes.put(True)
    checkpoints.wait()
    assert checkpoints.now_and_then({"fan": fan}, None)
    restored = _cold("fan")
    assert ModelPersistence(str(tmp_path)).restore(restored) and restored.is_warm
    models.outcomes.put(True)
    checkpoints.close()
