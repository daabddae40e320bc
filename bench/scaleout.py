"""Aggregate throughput of 1, 2, 3 `plantwatch run` workers sharing a site on NATS JetStream.

    python bench/scaleout.py [--assets 100] [--rows 600] [--workers 1,2,3] [--partitions 12] [--baseline-rows 100]

First one worker learns every asset's baseline (``--baseline-rows`` + 50 frames each) and
checkpoints it, so that the measured runs score rather than learn. Then, for each number of workers: a nats-server of
its own (JetStream, the partition mapping of docs/scaling.md), a copy of those models, a fresh
stream preloaded with the next ``assets × rows`` 8-sensor JSON frames (published on the sensors'
subjects ``plant.l1.<asset>``, which the mapping partitions; through JetStream publishes rather than
MQTT, since what is measured is how fast the workers drain the stream, not how fast a publisher
fills it), then the workers, started together (``source: nats``, storing in one VictoriaMetrics
through its InfluxDB write API, alerts in one PostgreSQL schema). The clock starts when the first
worker holds a partition and stops when the workers' ``/metrics`` count every frame written
(``plantwatch_readings_written_total``), and then when nothing is left to score (``/healthz``
``unscored_batches`` and ``scoring_backlog`` at 0 on every worker). It prints frames/s stored and
scored, the workers' CPU seconds per 100,000 frames and how many partitions moved (freed or fenced)
during the run; the last line is one JSON object.

On a machine with fewer cores than workers the workers share the cores, so the aggregate cannot
grow with them: the figure to read there is the CPU per frame, not the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import numpy as np
import psycopg
from nats.js.api import StreamConfig
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import PG_URL, run_nats, run_victoria  # noqa: E402
from workers import Worker, start_worker, stop_workers, wait_for  # noqa: E402

from ingest.nats_source import partition_mapping  # noqa: E402

TEMPLATE = "plant/{line}/{asset}"
SENSORS = tuple(f"sensor_{i}" for i in range(8))
STREAM = "PWBENCH"
WINDOW_ROWS = 50  # after the baseline: the feature window filled
SCHEMAS: list[str] = []


def frames(assets: int, first: int, rows: int, t0_ms: int) -> list[tuple[str, bytes]]:
    """(subject, payload) in time order: one frame per asset per row, rows ``first``... a second apart."""
    rng = np.random.default_rng(first)
    values = rng.normal(50.0, 1.0, size=(rows, assets, len(SENSORS))).round(4)
    out = []
    for row in range(rows):
        for asset in range(assets):
            ts = t0_ms + (first + row) * 1000
            body = {"ts": ts, "values": dict(zip(SENSORS, values[row, asset].tolist(), strict=True))}
            out.append((f"plant.l1.pump-{asset}", json.dumps(body).encode()))
    return out


async def preload(url: str, messages: list[tuple[str, bytes]]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["pw.>"]))
    for start in range(0, len(messages), 2000):  # stream-acknowledged publishes, 2,000 in flight
        await asyncio.gather(*(js.publish(s, p) for s, p in messages[start : start + 2000]))
    info = await js.stream_info(STREAM)
    assert info.state.messages == len(messages), (info.state.messages, len(messages))
    await nc.close()


def start_workers(
    tmp: Path, count: int, nats_url: str, victoria_url: str, partitions: int, schema: str, baseline_rows: int
) -> list[Worker]:
    config: dict[str, Any] = {
        "source": "nats",
        "mqtt": {"topic_template": TEMPLATE},
        "nats": {"url": nats_url, "stream": STREAM, "partitions": partitions},
        "storage": {"kind": "influxdb"},
        "influx": {"url": victoria_url},
        "detector": {"model_dir": str(tmp / "state"), "baseline_rows": baseline_rows},
        # PostgreSQL, as docs/scaling.md asks of a site: SQLite's one writer at a time, shared by several
        # processes, held the detectors up (28 % of a worker's samples in its alert writes).
        "alerts": {"store_url": f"{PG_URL}?options=-csearch_path%3D{schema}"},
        "log_level": "WARNING",
    }
    os.environ["PLANTWATCH_INFLUX__TOKEN"] = "bench"  # VictoriaMetrics takes any
    return [
        start_worker(tmp, f"w{i}", {**config, "nats": {**config["nats"], "worker_id": f"w{i}"}}) for i in range(count)
    ]


def new_schema() -> str:
    """A schema of its own in the PostgreSQL of the tests (dropped by drop_schemas)."""
    schema = f"pw_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    SCHEMAS.append(schema)
    return schema


def drop_schemas() -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for schema in SCHEMAS:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def warm_up(args: argparse.Namespace, victoria_url: str, base: Path, t0_ms: int) -> Path:
    """One worker learns every asset's baseline (and fills its window) and checkpoints it at its stop:
    the measured runs start from these models, as a site's workers do after their first hour."""
    tmp = base / "warm-up"
    tmp.mkdir()
    source, target = partition_mapping(TEMPLATE, "pw", args.partitions)
    messages = frames(args.assets, 0, args.baseline_rows + WINDOW_ROWS, t0_ms)
    with run_nats(tmp, mappings={source: target}) as server:
        asyncio.run(preload(server.url, messages))
        workers = start_workers(tmp, 1, server.url, victoria_url, args.partitions, new_schema(), args.baseline_rows)
        try:
            wait_for(lambda: drained(workers, len(messages)), 1800, "the warm-up to be scored", workers)
        finally:
            stop_workers(workers, 120)
    return tmp / "state"


def drained(workers: list[Worker], total: int) -> bool:
    """Every frame written, and nothing left to score."""
    if sum(w.metric("plantwatch_readings_written_total") for w in workers) < total:
        return False
    reports = [w.health() for w in workers]
    return all(r and r["unscored_batches"] == 0 and r["scoring_backlog"] == 0 for r in reports)


def run(count: int, args: argparse.Namespace, victoria_url: str, base: Path, warm: Path, t0_ms: int) -> dict[str, Any]:
    tmp = base / f"workers-{count}"
    tmp.mkdir()
    shutil.copytree(warm, tmp / "state")
    source, target = partition_mapping(TEMPLATE, "pw", args.partitions)
    messages = frames(args.assets, args.baseline_rows + WINDOW_ROWS, args.rows, t0_ms)
    with run_nats(tmp, mappings={source: target}) as server:
        asyncio.run(preload(server.url, messages))
        workers = start_workers(tmp, count, server.url, victoria_url, args.partitions, new_schema(), args.baseline_rows)
        try:
            return measure(workers, len(messages), args)
        finally:
            stop_workers(workers, 120)


def measure(workers: list[Worker], total: int, args: argparse.Namespace) -> dict[str, Any]:
    wait_for(lambda: any(w.partitions() for w in workers), 120, "a worker to hold a partition", workers)
    started = time.monotonic()
    cpu_before = sum(w.cpu_s() for w in workers)
    written = lambda: sum(w.metric("plantwatch_readings_written_total") for w in workers)  # noqa: E731
    wait_for(lambda: written() >= total, 1800, "every frame to be written", workers)
    stored_s = time.monotonic() - started

    wait_for(lambda: drained(workers, total), 1800, "every frame to be scored", workers)
    scored_s = time.monotonic() - started
    cpu = sum(w.cpu_s() for w in workers) - cpu_before
    held = [sorted(w.partitions()) for w in workers]
    # Partitions freed (a late worker's share) or fenced (a lease not renewed in time) during the run.
    logs = [w.log.read_text(errors="replace") for w in workers]
    moved = sum(text.count("lease freed") + text.count("stopping it here") for text in logs)
    rows_scored = sum(w.metric("plantwatch_rows_scored_total") for w in workers)
    alerts = sum(w.metric("plantwatch_alerts_opened_total") for w in workers)
    return {
        "workers": len(workers),
        "frames": total,
        "stored_per_s": round(total / stored_s),
        "scored_per_s": round(total / scored_s),
        "rows_scored": int(rows_scored),
        "alerts_opened": int(alerts),
        "cpu_s_per_100k": round(cpu / total * 100_000, 1),
        "partitions_held": held,
        "partitions_moved_during_run": moved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--rows", type=int, default=600, help="frames per asset")
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument(
        "--baseline-rows",
        type=int,
        default=100,
        help="rows per baseline: short ones give more false alerts, whose writes to the alert store, one per "
        "row of event time while a replay runs far faster than real time, take much of the workers' time",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="pw-scaleout-") as name:
        base = Path(name)
        t0_ms = (int(time.time()) - args.baseline_rows - WINDOW_ROWS - args.rows - 60) * 1000
        with run_victoria(base) as victoria:
            try:
                warm = warm_up(args, victoria.url, base, t0_ms)
                for count in (int(n) for n in args.workers.split(",")):
                    result = run(count, args, victoria.url, base, warm, t0_ms)
                    results.append(result)
                    print(
                        f"{count} worker(s): {result['frames']:,} frames stored at {result['stored_per_s']:,}/s, "
                        f"scored at {result['scored_per_s']:,}/s; {result['cpu_s_per_100k']} CPU s per 100k "
                        f"frames; partitions {result['partitions_held']}, "
                        f"moved: {result['partitions_moved_during_run']}",
                        flush=True,
                    )
            finally:
                drop_schemas()
    summary = {"cores": os.cpu_count(), "assets": args.assets, "rows": args.rows, "baseline_rows": args.baseline_rows}
    print(json.dumps({**summary, "runs": results}))


if __name__ == "__main__":
    main()
