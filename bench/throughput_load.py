"""The load side of bench/throughput.py: frames, filling persistent sessions, the bare paho subscriber
and a paced publisher.

The subscriber and the publisher run as subprocesses of the bench (``python bench/throughput_load.py
bare|pace ...``), each with a core's worth of GIL to itself, like ``plantwatch run``; each prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"
SENSORS = tuple(f"sensor_{i}" for i in range(8))
TOPIC = "plantwatch/{asset}"  # the default topic template's
SUBSCRIPTION = "plantwatch/+"
MAX_LINES_PER_PUB = 65_535  # mosquitto_pub -l drops a longer run (shared infrastructure notes)
PUBLISHERS_AT_ONCE = 50


def asset_names(first: int, count: int) -> list[str]:
    return [f"asset-{i:04d}" for i in range(first, first + count)]


def frame(ts_ms: int, values: Sequence[float]) -> str:
    """One 8-sensor JSON frame (~170 bytes), as a PLC gateway sends it."""
    body = ",".join(f'"{name}":{value:.4f}' for name, value in zip(SENSORS, values, strict=True))
    return f'{{"ts":{ts_ms},"values":{{{body}}}}}'


def frame_lines(frames: int, start_ms: int, seed: int, spacing_ms: int = 100) -> list[str]:
    """``frames`` frames ``spacing_ms`` apart of normal running around the asset's levels (``seed``: the asset's)."""
    rng = np.random.default_rng(seed)
    values = asset_levels(seed) + rng.normal(0, 1, size=(frames, len(SENSORS)))
    return [frame(start_ms + spacing_ms * i, row) for i, row in enumerate(values.tolist())]


def asset_levels(seed: int) -> np.ndarray:
    """The sensors' levels of the asset numbered ``seed``, the same in every phase of the bench."""
    return np.random.default_rng([seed, 1]).uniform(10, 100, size=len(SENSORS))


def _v5_connect_properties(expiry_s: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return props


def make_session(port: int, client_id: str) -> None:
    """Leave a persistent QoS 1 session subscribed to every asset's topic, so the broker keeps what is
    published until ``client_id`` connects again."""
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(SUBSCRIPTION, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(HOST, port, clean_start=False, properties=_v5_connect_properties(3600))
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise RuntimeError(f"no SUBACK for {client_id} from the broker on port {port}")
    finally:
        client.disconnect()
        client.loop_stop()


def fill(port: int, frames_by_asset: dict[str, list[str]]) -> float:
    """Publish every asset's frames at QoS 1 with ``mosquitto_pub -l``, one process per asset and up to
    PUBLISHERS_AT_ONCE at once; the seconds it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        pending: list[tuple[str, Path]] = []
        for asset, lines in frames_by_asset.items():
            if len(lines) > MAX_LINES_PER_PUB:
                raise ValueError(f"{asset}: {len(lines)} frames; mosquitto_pub -l takes {MAX_LINES_PER_PUB} at most")
            path = Path(tmp) / f"{asset}.jsonl"
            path.write_text("\n".join(lines) + "\n")
            pending.append((asset, path))
        running: list[subprocess.Popen[bytes]] = []
        while pending or running:
            while pending and len(running) < PUBLISHERS_AT_ONCE:
                asset, path = pending.pop()
                with path.open("rb") as stdin:
                    argv = ["mosquitto_pub", "-h", HOST, "-p", str(port), "-q", "1", "-l"]
                    running.append(subprocess.Popen([*argv, "-t", TOPIC.format(asset=asset)], stdin=stdin))
            running[0].wait()
            done = running.pop(0)
            if done.returncode != 0:
                raise RuntimeError(f"mosquitto_pub exited with {done.returncode}")
    return time.monotonic() - started


def bare(port: int, client_id: str, expect: int, timeout_s: float) -> dict[str, float]:
    """The ceiling: drain the persistent session ``client_id`` with paho, counting and nothing else
    (paho acknowledges each QoS 1 delivery after the callback). Seconds from the first delivery to
    the ``expect``-th, and the CPU seconds this process spent in between."""
    count = 0
    first = last = cpu_first = cpu_last = 0.0
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal count, first, last, cpu_first, cpu_last
        count += 1
        if count == 1:
            first, cpu_first = time.perf_counter(), time.process_time()
        if count == expect:
            last, cpu_last = time.perf_counter(), time.process_time()
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(SUBSCRIPTION, qos=1)
    client.connect(HOST, port, clean_start=False, properties=_v5_connect_properties(3600))
    client.loop_start()
    finished = done.wait(timeout_s)
    client.disconnect()
    client.loop_stop()
    if not finished:
        raise RuntimeError(f"bare subscriber: {count} of {expect} deliveries within {timeout_s} s")
    seconds = last - first
    # cpu_s: this process's CPU (every thread) over the same span
    return {"received": count, "seconds": seconds, "per_s": (count - 1) / seconds, "cpu_s": cpu_last - cpu_first}


def pace(port: int, assets: int, rate: float, seconds: float) -> dict[str, float]:
    """Publish frames stamped with the publish time, round-robin over ``assets`` assets, at ``rate``
    frames/s for ``seconds`` (QoS 1, few in flight, as a gateway would)."""
    names = asset_names(0, assets)
    rng = np.random.default_rng(7)
    levels = np.array([asset_levels(a) for a in range(assets)])  # normal running, as in the fill
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pacer", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(50)
    client.connect(HOST, port)
    client.loop_start()
    started = time.monotonic()
    sent = 0
    info = None
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            a = sent % assets
            values = levels[a] + rng.normal(0, 1, size=len(SENSORS))
            info = client.publish(TOPIC.format(asset=names[a]), frame(time.time_ns() // 1_000_000, values), qos=1)
            sent += 1
        time.sleep(0.002)
    if info is not None:
        info.wait_for_publish(30)
    took = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return {"sent": sent, "per_s": sent / took}


def main() -> None:
    parser = argparse.ArgumentParser(description="bench/throughput.py's subscriber and publisher")
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bare")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--client-id", required=True)
    b.add_argument("--expect", type=int, required=True)
    b.add_argument("--timeout", type=float, default=600)
    p = sub.add_parser("pace")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--assets", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    if args.mode == "bare":
        result = bare(args.port, args.client_id, args.expect, args.timeout)
    else:
        result = pace(args.port, args.assets, args.rate, args.seconds)
    print(json.dumps(result))


def run_json(argv: list[str], timeout_s: float) -> dict[str, float]:
    """Run this module in a subprocess; its one JSON line."""
    out = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({out.returncode}): {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
