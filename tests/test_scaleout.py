"""Scale-out on NATS JetStream: three `plantwatch run` workers share a site's partitions; one is killed.

A nats-server of the test's own (JetStream, its MQTT listener, the partition mapping) takes the
sensors' MQTT; each worker stores readings and verdicts in a SQLite file of its own (so the test can
tell which worker scored what), keeps its partitions' state under one shared ``model_dir`` and its
alerts in one PostgreSQL schema shared by all. The test checks real outcomes: the partitions are
split with none held twice; every published reading is stored; every row after the baseline is
scored, and where two workers scored the same row (the survivor scoring again what the killed worker
logged after its checkpoint) they agree exactly; each asset's verdicts come from one worker while it
held the asset; the survivor restored the killed worker's learned models rather than learning new
baselines; and an alert the killed worker opened is continued by the survivor, not opened twice.
"""

from __future__ import annotations

import json
import math
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from psycopg import sql
from servers import PG_URL, NatsServer, run_nats
from workers import Worker, start_worker, stop_workers, wait_for

from ingest.nats_source import partition_mapping
from plantwatch.service.checkpoints import Checkpoints
from plantwatch.service.model_store import saved_assets

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = "plant/{line}/{asset}"
PARTITIONS = 6
ASSETS = [f"pump-{i}" for i in range(12)]
BASELINE_ROWS = 40
FIRST_ROWS = 100  # published before the kill is prepared
ALL_ROWS = 240
FAULT_FROM = 150  # every asset's first sensor steps up from this row: an alert per asset
LEASE_S = 6.0
T0_MS = (int(time.time()) - 3600) * 1000  # event time: an hour ago, one row a second


def frame(asset: int, row: int) -> str:
    wave = math.sin(row / 9.0 + asset)
    noise = ((row * 7919 + asset * 104729) % 1000) / 1000.0 - 0.5
    a = 10.0 + wave + 0.2 * noise + (8.0 if row >= FAULT_FROM else 0.0)
    b = 20.0 + 0.5 * wave - 0.3 * noise
    c = 5.0 + 0.1 * noise
    return json.dumps({"ts": T0_MS + row * 1000, "values": {"a": round(a, 4), "b": round(b, 4), "c": round(c, 4)}})


class Publisher:
    """Sensors publishing MQTT 3.1.1 at QoS 1 to nats-server's MQTT listener, as they would to any broker."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensors", protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(20)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def rows(self, first: int, last: int, pause_s: float = 0.0) -> None:
        for row in range(first, last):
            infos = [self.client.publish(f"plant/l1/{asset}", frame(i, row), qos=1) for i, asset in enumerate(ASSETS)]
            for info in infos:
                info.wait_for_publish(10)
            if pause_s:
                time.sleep(pause_s)  # paces the stream so the kill lands mid-stream; nothing waits on it

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rows_of(db: Path, table: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        try:
            if table == "readings":
                return conn.execute("SELECT DISTINCT asset, ts_ns FROM readings").fetchall()
            return conn.execute("SELECT asset, ts_ns, score, probability, anomaly FROM anomaly").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


def verdicts(workers: list[Worker]) -> dict[str, dict[int, dict[str, tuple[float, float]]]]:
    """asset -> row -> worker -> (score, probability)."""
    found: dict[str, dict[int, dict[str, tuple[float, float]]]] = {}
    for w in workers:
        for asset, ts_ns, score, probability, _ in rows_of(w.db, "anomaly"):
            row = (ts_ns // 1_000_000 - T0_MS) // 1000
            found.setdefault(asset, {}).setdefault(row, {})[w.name] = (score, probability)
    return found


def stored(workers: list[Worker]) -> set[tuple[str, int]]:
    return {(a, t) for w in workers for a, t in rows_of(w.db, "readings")}


def scored_through(workers: list[Worker], last_row: int) -> bool:
    found = verdicts(workers)
    return all(last_row in found.get(asset, {}) for asset in ASSETS)


def everything() -> set[tuple[str, int]]:
    """(asset, ts_ns) of every reading published."""
    return {(asset, (T0_MS + row * 1000) * 1_000_000) for asset in ASSETS for row in range(ALL_ROWS)}


def wait_until_stored_and_scored(workers: list[Worker]) -> None:
    published = everything()
    wait_for(lambda: stored(workers) >= published, 45, "every published reading to be stored", workers)
    wait_for(lambda: scored_through(workers, ALL_ROWS - 1), 45, "every row to be scored", workers)


def ownership(log: Path, worker: str) -> list[tuple[int, float, float]]:
    """(partition, started, stopped) from a worker's log; stopped is inf while it runs."""
    spans: dict[int, float] = {}
    done: list[tuple[int, float, float]] = []
    for line in log.read_text(errors="replace").splitlines():
        if m := re.search(rf"partition (\d+): started by {worker} at ([\d.]+)", line):
            spans[int(m[1])] = float(m[2])
        elif m := re.search(rf"partition (\d+): stopped by {worker} at ([\d.]+)", line):
            done.append((int(m[1]), spans.pop(int(m[1])), float(m[2])))
    return done + [(p, t, math.inf) for p, t in spans.items()]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    source, target = partition_mapping(TEMPLATE, "pw", PARTITIONS)
    with run_nats(tmp_path, mappings={source: target}) as server:
        yield server


@pytest.fixture
def shared_schema(pg_schema: str) -> str:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    return pg_schema


def start_test_worker(tmp_path: Path, name: str, server: NatsServer, schema: str) -> Worker:
    config = {
        "source": "nats",
        "mqtt": {"topic_template": TEMPLATE},
        "nats": {
            "url": server.url,
            "stream": "PWTEST",
            "subject_prefix": "pw",
            "partitions": PARTITIONS,
            "worker_id": name,
            "lease_s": LEASE_S,
            "ack_wait_s": 30,
        },
        "storage": {"kind": "sqlite", "sqlite_path": str(tmp_path / f"{name}-readings.db"), "flush_interval_s": 0.2},
        "detector": {
            "model_dir": str(tmp_path / "state"),
            "baseline_rows": BASELINE_ROWS,
            "window_samples": 5,
            "checkpoint_interval_s": 1,
        },
        "alerts": {"store_url": f"{PG_URL}?options=-csearch_path%3D{schema}"},
    }
    return start_worker(tmp_path, name, config)


def test_workers_split_the_assets_and_survive_a_kill(
    tmp_path: Path, nats_server: NatsServer, shared_schema: str
) -> None:
    workers = [start_test_worker(tmp_path, f"w{i}", nats_server, shared_schema) for i in (1, 2, 3)]
    publisher: Publisher | None = None
    try:
        # The partitions are shared out fairly, none held twice (a worker that started later than the
        # others gets its share at their next round, when they free what they hold beyond theirs).
        def split() -> bool:
            held = [w.partitions() for w in workers]
            fair = all(len(parts) == PARTITIONS // 3 for parts in held)
            return fair and set().union(*held) == set(range(PARTITIONS))

        wait_for(split, 45, "the workers to share the partitions fairly", workers)
        held = {w.name: w.partitions() for w in workers}

        publisher = Publisher(nats_server.mqtt_port)
        publisher.rows(0, FIRST_ROWS)
        wait_for(lambda: scored_through(workers, FIRST_ROWS - 1), 45, "the first rows to be scored", workers)
        # Before the kill each asset is scored by one worker only.
        owner = {asset: set().union(*(set(v) for v in rows.values())) for asset, rows in verdicts(workers).items()}
        assert all(len(names) == 1 for names in owner.values()), owner
        owner_of = {asset: next(iter(names)) for asset, names in owner.items()}
        victim = max(workers, key=lambda w: sum(1 for name in owner_of.values() if name == w.name))
        victim_assets = sorted(a for a, name in owner_of.items() if name == victim.name)
        assert victim_assets, owner_of
        survivors = [w for w in workers if w is not victim]
        # A checkpoint holds the victim's learned models (so the survivor can restore rather than relearn).
        state = tmp_path / "state" / "partitions"

        def checkpointed() -> bool:
            names: set[str] = set()
            for part in held[victim.name]:
                try:
                    names |= set(saved_assets(Checkpoints(state / f"p{part}").latest.directory))
                except OSError:  # a generation replaced while read
                    return False
            return set(victim_assets) <= names

        wait_for(checkpointed, 30, "a checkpoint of the victim's models", workers)

        # Mid-stream: the rest is published at a pace while the victim is killed after the fault began.
        rest = threading.Thread(target=publisher.rows, args=(FIRST_ROWS, ALL_ROWS, 0.02))
        rest.start()
        wait_for(
            lambda: any(row >= FAULT_FROM + 10 for a in victim_assets for row in verdicts([victim]).get(a, {})),
            45,
            "the victim to score rows of the fault",
            workers,
        )
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        killed_at = time.time()
        rest.join(60)
        assert not rest.is_alive()

        # The survivors take the victim's partitions and everything is stored and scored.
        wait_for(
            lambda: set().union(*(w.partitions() for w in survivors)) == set(range(PARTITIONS)),
            45,
            "the survivors to take the victim's partitions",
            workers,
        )
        wait_until_stored_and_scored(workers)
    finally:
        if publisher is not None:
            publisher.close()
        stop_workers(workers, 30)

    check_outcome(workers, owner_of, victim_assets, shared_schema, {victim.name: killed_at})


def check_outcome(
    workers: list[Worker], owner_of: dict[str, str], moved: list[str], schema: str, died_at: dict[str, float]
) -> None:
    """What every hand-over must leave: ``moved`` assets went from ``owner_of`` to one other worker, the
    rest stayed; ``died_at``: workers killed then (their logs say nothing of it)."""
    # No reading dropped (union of the workers' stores; duplicates are one row per store).
    assert stored(workers) == everything()
    found = verdicts(workers)
    for asset in ASSETS:
        rows = found[asset]
        first = min(rows)
        # Every row after the baseline has a verdict: none lost in the hand-over, none relearned.
        assert sorted(rows) == list(range(first, ALL_ROWS)), asset
        assert first < FIRST_ROWS, f"{asset}: scoring began only at row {first}"
        for row, by in rows.items():
            # Rows scored by two workers (the taker scored again what the previous owner logged after
            # its checkpoint) got the same verdict from both: the taker continued the same model.
            assert len(set(by.values())) == 1, (asset, row, by)
        names = {name for by in rows.values() for name in by}
        if asset in moved:
            assert len(names - {owner_of[asset]}) == 1, (asset, names)
            # and the previous owner scored no row after the taker's first
            taken_at = min(row for row, by in rows.items() if set(by) - {owner_of[asset]})
            assert all(set(by) - {owner_of[asset]} for row, by in rows.items() if row > taken_at), asset
        else:  # an asset whose partition stayed where it was
            assert names == {owner_of[asset]}, asset

    # The takers restored the moved assets' models, warm, from their partitions' checkpoints.
    logs = "".join(w.log.read_text(errors="replace") for w in workers if w.name not in died_at)
    for asset in moved:
        assert re.search(rf"restored the model of {asset} from .* \(warm: True\)", logs), asset

    # Ownership spans from the workers' own logs never overlap; a killed worker's ended with its death.
    spans = [
        (p, start, min(end, died_at.get(w.name, end)), w.name)
        for w in workers
        for p, start, end in ownership(w.log, w.name)
    ]
    for p, s, e, n in spans:
        for q, s2, e2, n2 in spans:
            if p == q and n != n2:
                assert e <= s2 or e2 <= s, (p, n, s, e, n2, s2, e2)

    # One anomaly alert per asset: one opened before a hand-over was continued by the taker, not opened again.
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        alerts = conn.execute("SELECT asset, count(*) FROM alerts WHERE kind = 'anomaly' GROUP BY asset").fetchall()
    per_asset: dict[str, int] = dict(alerts)
    assert set(per_asset) == set(ASSETS), per_asset
    assert all(count == 1 for count in per_asset.values()), per_asset


def test_a_worker_joining_takes_its_share_from_a_running_one(
    tmp_path: Path, nats_server: NatsServer, shared_schema: str
) -> None:
    first = start_test_worker(tmp_path, "w1", nats_server, shared_schema)
    workers = [first]
    publisher: Publisher | None = None
    try:
        wait_for(lambda: first.partitions() == set(range(PARTITIONS)), 45, "w1 to take every partition", workers)
        publisher = Publisher(nats_server.mqtt_port)
        publisher.rows(0, FIRST_ROWS)
        wait_for(lambda: scored_through(workers, FIRST_ROWS - 1), 45, "the first rows to be scored", workers)
        handed_over = threading.Event()
        held_back = ALL_ROWS - 40  # published only once w2 holds its share, however long it takes to start

        def publish_rest(sensors: Publisher) -> None:
            sensors.rows(FIRST_ROWS, held_back, 0.02)
            handed_over.wait(60)
            sensors.rows(held_back, ALL_ROWS, 0.02)

        rest = threading.Thread(target=publish_rest, args=(publisher,))
        rest.start()  # mid-stream: w1 stops the partitions it gives up, w2 starts them, readings flowing
        second = start_test_worker(tmp_path, "w2", nats_server, shared_schema)
        workers.append(second)
        half = PARTITIONS // 2
        wait_for(
            lambda: len(first.partitions()) == half and len(second.partitions()) == half,
            45,
            "w2 to take its share from w1",
            workers,
        )
        handed_over.set()
        rest.join(60)
        assert not rest.is_alive()
        wait_until_stored_and_scored(workers)
    finally:
        if publisher is not None:
            publisher.close()
        stop_workers(workers, 30)
    moved = sorted(asset for asset, rows in verdicts(workers).items() if any("w2" in by for by in rows.values()))
    assert moved, "no asset moved to w2"
    check_outcome(workers, dict.fromkeys(ASSETS, "w1"), moved, shared_schema, {})
