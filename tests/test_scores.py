"""GET /assets/{asset}/scores: each asset's recent scored rows, kept in a fixed ring per asset."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from detector.types import Verdict
from plantwatch.service.ring_file import RingFile, RingFiles, RingsWrittenBehind
from plantwatch.service.row_history import RowHistory
from plantwatch.service.score_history import SCORE_RECORD, ScoreHistory
from telemetry.counters import Counters

S = 1_000_000_000
T0 = 1_714_564_800 * S


def row(t_s: int, asset: str = "pump-1", **kw: Any) -> Verdict:
    return Verdict(asset, T0 + t_s * S, float(t_s), 0.5, t_s % 7 == 0, (), **kw)


def test_the_ring_keeps_the_newest_rows_oldest_first_and_only_scored_ones() -> None:
    history = ScoreHistory(rows=5)
    history.add([row(t) for t in range(12)] + [row(99, warming_up=True), row(98, running=False)])
    assert [p.ts_ns for p in history.since("pump-1", None, 100)] == [T0 + t * S for t in range(7, 12)]
    assert [p.score for p in history.since("pump-1", T0 + 9 * S, 100)] == [9.0, 10.0, 11.0]
    assert [p.score for p in history.since("pump-1", None, 2)] == [10.0, 11.0]  # the newest two
    assert [p.anomaly for p in history.since("pump-1", None, 5)] == [True, False, False, False, False]
    history.forget("pump-1")
    assert history.since("pump-1", None, 5) == [] and history.since("fan-9", None, 5) == []


def test_the_endpoint_serves_an_assets_scores_and_404_for_an_unknown_one(store: SqliteAlertStore) -> None:
    history = ScoreHistory()
    history.add([row(t) for t in range(30)])

    def scores(asset: str, since_ns: int | None, limit: int) -> list[dict[str, Any]] | None:
        return None if asset != "pump-1" else [dataclasses.asdict(p) for p in history.since(asset, since_ns, limit)]

    hooks = ServiceHooks(store=store, counters=Counters(), scores=scores)
    with TestClient(create_app(hooks), base_url="http://localhost") as client:
        answer = client.get("/assets/pump-1/scores", params={"since": "2024-05-01T12:00:20Z", "limit": 5})
        assert answer.status_code == 200
        body = answer.json()
        assert body["asset"] == "pump-1"
        assert [(p["at"], p["score"], p["anomaly"]) for p in body["points"]] == [
            (f"2024-05-01T12:00:{t}Z", float(t), t % 7 == 0) for t in range(25, 30)
        ]
        assert client.get("/assets/fan-9/scores").status_code == 404
        assert client.get("/assets/pump-1/scores", params={"since": "soon"}).status_code == 422
        assert client.get("/assets/pump-1/scores", params={"limit": 0}).status_code == 422


def _rows(first_s: int, count: int, sensors: int = 2) -> list[tuple[int, np.ndarray]]:
    return [(T0 + t * S, np.array([t + 0.5 * k for k in range(sensors)])) for t in range(first_s, first_s + count)]


def test_a_ring_holds_what_it_was_given_as_it_grows_to_its_capacity_and_wraps() -> None:
    history, rows = ScoreHistory(rows=200), RowHistory(rows=200)
    for written in (1, 64, 65, 150, 200, 201, 555):
        history.add([row(t, asset=f"pump-{written}") for t in range(written)])
        rows.add(f"pump-{written}", ("flow", "temp"), _rows(0, written))
        newest = list(range(max(0, written - 200), written))
        assert [p.score for p in history.since(f"pump-{written}", None, 1000)] == [float(t) for t in newest]
        assert rows.since(f"pump-{written}", None, 1000).ts_ns == [T0 + t * S for t in newest]


def test_the_rings_live_in_an_unlinked_file_in_the_folder_given_and_a_forgotten_slot_is_reused(tmp_path: Path) -> None:
    history = ScoreHistory(rows=100, folder=tmp_path)
    history.add([row(t, asset="pump-1") for t in range(150)] + [row(t, asset="pump-2") for t in range(10)])
    assert list(tmp_path.iterdir()) == []  # O_TMPFILE: nothing to clean up after a crash
    history._rings.flush()
    file = history._rings.rings._files[(SCORE_RECORD, 100)]
    assert os.readlink(f"/proc/self/fd/{file._fd}").startswith(f"{tmp_path}/")
    size = os.fstat(file._fd).st_size
    assert size == 2 * 100 * SCORE_RECORD.itemsize - 90 * SCORE_RECORD.itemsize  # pump-2's slot: 10 written
    history.forget("pump-1")
    history.add([row(t, asset="pump-3") for t in range(100)])  # takes pump-1's slot
    assert os.fstat(file._fd).st_size == size
    assert [p.score for p in history.since("pump-3", None, 1000)] == [float(t) for t in range(100)]
    assert [p.score for p in history.since("pump-2", None, 1000)] == [float(t) for t in range(10)]
    assert history.since("pump-1", None, 1000) == []


def test_a_ring_file_keeps_the_newest_records_across_wraps_of_any_length() -> None:
    rng = np.random.default_rng(5)
    ring = RingFile(np.dtype([("ts", "<i8"), ("v", "<f4", (3,))]), 7, None, "a test's rings", "none")
    written = np.empty(0, ring.dtype)
    for size in rng.integers(0, 20, 60):  # appends shorter than, as long as and longer than the ring
        records = np.empty(int(size), ring.dtype)
        records["ts"] = np.arange(written.size, written.size + size)
        records["v"] = rng.normal(size=(size, 3))
        ring.append("a", records)
        written = np.concatenate([written, records])
        assert ring.read("a").tobytes() == written[-7:].tobytes()
    assert ring.read("b").size == 0


def test_rows_written_behind_wait_in_memory_until_a_second_has_passed_or_their_key_is_read() -> None:
    now = [0.0]
    record = np.dtype([("ts", "<i8")])
    rings = RingFiles(None, "a test's rings", "none")
    behind = RingsWrittenBehind(rings, every_s=1.0, clock=lambda: now[0])

    def stamps(first: int, count: int) -> np.ndarray:
        return np.array([(t,) for t in range(first, first + count)], record)

    def ts(records: np.ndarray | None) -> list[int]:
        assert records is not None
        return list(records["ts"].tolist())

    behind.append("a", stamps(0, 3), 5)
    behind.append("b", stamps(0, 2), 5)
    behind.append("a", stamps(3, 4), 5)
    assert rings.read("a") is None and rings.read("b") is None  # nothing written yet
    assert ts(behind.read("a")) == [2, 3, 4, 5, 6]  # a read writes its key's rows first
    assert rings.read("b") is None
    now[0] = 1.0
    behind.append("c", stamps(0, 1), 5)  # a second on: everything waiting is written, in one run
    assert ts(rings.read("b")) == [0, 1] and ts(rings.read("c")) == [0]
    behind.append("a", stamps(7, 20), 5)  # a burst holds no more than twice the ring in memory
    assert behind._waiting["a"].count <= 10
    behind.append("a", stamps(0, 2), 3)  # another capacity: a new ring, without the old layout's rows
    behind.append("b", stamps(2, 1), 5)
    behind.forget("b")  # a forgotten key's waiting rows go with it
    now[0] = 2.0
    behind.flush()
    assert ts(behind.read("a")) == [0, 1] and behind.read("b") is None


def test_a_failing_write_drops_that_assets_history_and_the_rest_runs_on(caplog: pytest.LogCaptureFixture) -> None:
    history = ScoreHistory(rows=10)
    history.add([row(t) for t in range(3)])
    history._rings.flush()
    file = history._rings.rings._files[(SCORE_RECORD, 10)]
    real_fd = file._fd
    file._fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    history.add([row(t) for t in range(3, 5)])
    assert history.since("pump-1", None, 10) == [] and "cannot write the API's history file" in caplog.text
    file._fd = real_fd
    history.add([row(t) for t in range(5, 7)])
    assert [p.score for p in history.since("pump-1", None, 10)] == [5.0, 6.0]


def test_the_row_ring_keeps_each_sensors_newest_values_and_starts_again_for_new_sensors() -> None:
    history = RowHistory(rows=4)
    history.add("pump-1", ("flow", "temp"), _rows(0, 3))
    history.add("pump-1", ("flow", "temp"), [(T0 + 3 * S, np.array([3.0, np.nan])), *_rows(4, 2)])
    kept = history.since("pump-1", None, 100)
    assert kept.sensors == ("flow", "temp") and kept.ts_ns == [T0 + t * S for t in range(2, 6)]
    assert kept.values == [[2.0, 2.5], [3.0, None], [4.0, 4.5], [5.0, 5.5]]  # a missing value is None
    assert history.since("pump-1", T0 + 4 * S, 1).values == [[5.0, 5.5]]
    history.add("pump-1", ("flow", "temp", "speed"), _rows(9, 1, sensors=3))  # relearned with another sensor
    assert history.since("pump-1", None, 100).values == [[9.0, 9.5, 10.0]]
    history.forget("pump-1")
    assert history.since("pump-1", None, 5).ts_ns == [] and history.since("fan-9", None, 5).sensors == ()


def test_the_readings_endpoint_serves_an_assets_rows_and_404_for_an_unknown_one(store: SqliteAlertStore) -> None:
    history = RowHistory()
    history.add("pump-1", ("flow", "temp"), _rows(0, 30))

    def readings(asset: str, since_ns: int | None, limit: int) -> dict[str, Any] | None:
        return None if asset != "pump-1" else dataclasses.asdict(history.since(asset, since_ns, limit))

    hooks = ServiceHooks(store=store, counters=Counters(), readings=readings)
    with TestClient(create_app(hooks), base_url="http://localhost") as client:
        answer = client.get("/assets/pump-1/readings", params={"since": "2024-05-01T12:00:27Z"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["sensors"] == ["flow", "temp"]
        assert [(p["at"], p["values"]) for p in body["points"]] == [
            (f"2024-05-01T12:00:{t}Z", [float(t), t + 0.5]) for t in range(27, 30)
        ]
        assert client.get("/assets/fan-9/readings").status_code == 404
        assert client.get("/assets/pump-1/readings", params={"limit": 721}).status_code == 422
