"""End-to-end throughput of `plantwatch run` against the bare paho ceiling, measured in one run.

    python bench/throughput.py [--frames 100000] [--assets 100] [--more-assets 900] [--latency-s 20]

1. Starts Mosquitto and VictoriaMetrics on loopback and leaves two persistent QoS 1 sessions, one
   for a bare paho subscriber and one for plantwatch; fills both with ``--frames`` 8-sensor JSON
   frames over ``--assets`` assets from many ``mosquitto_pub -l`` processes, one asset's frames
   stamped 100 ms apart, or as far apart as the paced phase will send them when that is further
   (``frame_spacing_ms``: 250 ms for 1,000 assets).
2. The ceiling: a bare paho subscriber (its own process) drains its session, counting only.
3. `plantwatch run` (the embedded default configuration, with the bench's broker, VictoriaMetrics
   and a SQLite alert store) drains its session: received → decoded → written and acknowledged →
   aligned and scored → alert rule. Its rate counts frames *scored or learned* (verdict rows, from
   /metrics) from its first /metrics answer to the last frame; CPU seconds are the process's own.
4. Latency: a publisher stamps frames with the publish time at half plantwatch's rate;
   ``plantwatch_reading_to_verdict_seconds`` gives publish→verdict p50 and p99.
5. Memory: RSS (the service and its receiver child) with ``--assets`` assets learned, then again
   after ``--more-assets`` more each learned their baseline (``--more-assets 900``: 1,000 assets x 8 sensors).

Its last line is one JSON object (bare_per_s, plantwatch_per_s, ratio, p50_ms, p99_ms, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reliability_kit import Broker, Plantwatch, Tsdb, _rss_mb, machine_busy, wait_for
from throughput_load import asset_names, fill, frame_lines, make_session, run_json

BARE_ID = "bench-bare"
PLANTWATCH_ID = "plantwatch-bench"
VERDICT_ROWS = (  # every frame ends in exactly one of these once the detector has taken it
    "plantwatch_rows_scored_total",
    "plantwatch_baseline_rows_total",
    "plantwatch_rows_skipped_total",
    "plantwatch_rows_stopped_total",
    "plantwatch_incomplete_rows_total",
)
LAG = "plantwatch_reading_to_verdict_seconds"
ACKED = "plantwatch_received_to_acked_seconds"
JUDGED = "plantwatch_received_to_verdict_seconds"  # each scored batch's oldest delivery
# /metrics answers in ~5 ms of plantwatch's CPU: polled at 20 Hz it took 10 % of its main thread.
POLL_S = 0.25
DEFAULT_RECEIVER = "process"  # plantwatch/default.yaml's mqtt.receiver
GOAL_RATIO = 0.7  # issue 15: end to end at 0.7 of the bare ceiling
PACED_GUESS_PER_S = 4000  # about half the drain's rate on these machines (the paced phase's default rate)
FILL_SPACING_MS = 100  # one asset's filled frames at 10 Hz, unless the paced phase's come slower
DISCOVERY_S = 30.0  # an asset's sensors are found from its first this many seconds (detector.max_staleness_s)


def config_text(folder: Path, broker: Broker, tsdb: Tsdb, api_port: int, receiver: str, models: bool = False) -> str:
    """The embedded default configuration but for where the servers and files are (and ``mqtt.receiver``;
    with ``models``, ``detector.model_dir`` as configs/docker.yaml sets it: checkpoints and the readings log)."""
    detector = f"detector:\n  model_dir: {folder / 'models'}\n" if models else ""
    return (
        detector
        + f"""mqtt:
  url: {broker.url}
  client_id: {PLANTWATCH_ID}-{receiver}
  receiver: {receiver}
influx:
  url: {tsdb.url}
alerts:
  store_url: sqlite:///{folder / "alerts.db"}
api:
  port: {api_port}
"""
    )


@dataclass
class Sample:
    at: float
    done: float  # verdict rows
    written: float
    cpu_s: float  # the service process's
    machine: dict[str, float]  # CPU seconds of each process on the way, and of the whole machine (cpu_by_process)


def verdict_rows(metrics: dict[str, float]) -> float:
    return sum(metrics.get(name, 0.0) for name in VERDICT_ROWS)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # USER_HZ is 100 on Linux


def cpu_by_process(pids: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds so far of each named process (0 for one that is not running) and of the machine."""
    cpu = {name: cpu_seconds(pid) if pid else 0.0 for name, pid in pids.items()}
    cpu["machine"] = machine_busy()
    return cpu


def server_pids(broker: Broker, tsdb: Tsdb) -> dict[str, int | None]:
    return {name: server.proc.pid if server.proc else None for name, server in (("broker", broker), ("tsdb", tsdb))}


def children(pid: int) -> list[int]:
    """The process's children (``mqtt.receiver: process``'s receiver)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def sample(service: Plantwatch, servers: dict[str, int | None]) -> Sample:
    assert service.pid is not None
    metrics = service.metrics()
    receiver = children(service.pid)
    pids = {"service": service.pid, "receiver": receiver[0] if receiver else None, **servers}
    return Sample(
        time.monotonic(),
        verdict_rows(metrics),
        metrics.get("plantwatch_readings_written_total", 0.0),
        cpu_seconds(service.pid),
        cpu_by_process(pids),
    )


def drain(
    service: Plantwatch, expect: float, timeout_s: float, servers: dict[str, int | None] | None = None
) -> tuple[Sample, Sample]:
    """Poll /metrics until ``expect`` verdict rows; the first and the last sample (with the CPU of
    ``servers``, name: pid, beside the service's)."""
    servers = servers or {}
    first = last = sample(service, servers)
    deadline = time.monotonic() + timeout_s
    while last.done < expect:
        if time.monotonic() > deadline:
            raise TimeoutError(f"plantwatch: {last.done:.0f} of {expect:.0f} frames scored within {timeout_s} s")
        time.sleep(POLL_S)
        last = sample(service, servers)
    return first, last


def histogram(metrics: dict[str, float], name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of each bucket of ``name``."""
    buckets = []
    for key, value in metrics.items():
        if key.startswith(f"{name}_bucket{{"):
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), value))
    return sorted(buckets)


def quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile of what was observed between two scrapes, interpolated within its bucket."""
    counts = [(bound, a - b) for (bound, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1]
    if total <= 0:
        return float("nan")
    target, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= target:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (target - below) / max(cumulative - below, 1e-9)
        lower, below = bound, cumulative
    return lower


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    broker, tsdb = Broker(tmp / "mq"), Tsdb(tmp / "vm")
    broker.start()
    tsdb.start()
    try:
        return _measure(args, tmp, broker, tsdb)
    finally:
        broker.stop()
        tsdb.stop()


def _measure(args: argparse.Namespace, tmp: Path, broker: Broker, tsdb: Tsdb) -> dict[str, Any]:
    per_asset = args.frames // args.assets
    total = per_asset * args.assets
    for client_id in (BARE_ID, *(f"{PLANTWATCH_ID}-{r}" for r in args.receivers)):
        make_session(broker.port, client_id)
    spacing = frame_spacing_ms(args)
    start_ms = int(time.time() * 1000) - 3_600_000 - per_asset * spacing
    names = asset_names(0, args.assets)
    frames = {a: frame_lines(per_asset, start_ms, seed=i, spacing_ms=spacing) for i, a in enumerate(names)}
    fill_s = fill(broker.port, frames)
    print(
        f"filled {1 + len(args.receivers)} sessions with {total:,} frames ({args.assets} assets) in {fill_s:.1f} s",
        flush=True,
    )

    servers = server_pids(broker, tsdb)
    before = cpu_by_process(servers)
    bare = run_json(["bare", "--port", str(broker.port), "--client-id", BARE_ID, "--expect", str(total)], 900)
    after = cpu_by_process(servers)
    bare_cpu = {"bare": bare["cpu_s"], "broker": after["broker"] - before["broker"]}
    bare_per_100k = per_100k(bare_cpu, total)
    print(
        f"bare paho subscriber: {bare['per_s']:,.0f} frames/s ({bare['seconds']:.2f} s); CPU s per 100,000 frames: "
        f"the subscriber {bare_per_100k['bare']:.1f}, Mosquitto {bare_per_100k['broker']:.1f}",
        flush=True,
    )

    result: dict[str, Any] = {"frames": total, "assets": args.assets, "fill_s": round(fill_s, 1)}
    result["bare_per_s"] = round(bare["per_s"])
    result["bare_cpu_s_per_100k_frames"] = bare_per_100k
    for n, receiver in enumerate(args.receivers):
        last = n == len(args.receivers) - 1
        # Each session also holds the frames paced while the services before it ran (subscribed, offline).
        backlog = total + sum(result[r]["paced_sent"] for r in args.receivers[:n])
        figures = run_service(args, tmp / receiver, broker, tsdb, receiver, backlog, start_ms, more=last)
        figures["ratio"] = round(figures["plantwatch_per_s"] / bare["per_s"], 3)
        # 0.7 of the bare ceiling, every process on the machine at its drain cost per frame
        machine_per_frame = figures["drain_cpu_s_per_100k_frames"]["machine"] / 100_000
        figures["cores_at_goal"] = round(GOAL_RATIO * bare["per_s"] * machine_per_frame, 2)
        print_budget(figures, bare["per_s"])
        result[receiver] = figures
    # The headline: the embedded default configuration's figures.
    default = result.get(DEFAULT_RECEIVER, result[args.receivers[-1]])
    result.update({k: default[k] for k in ("plantwatch_per_s", "ratio", "p99_ms") if k in default})
    result["rss_mb_1000_assets"] = default.get("rss_mb_1000_assets", float("nan"))
    return result


def run_service(
    args: argparse.Namespace,
    folder: Path,
    broker: Broker,
    tsdb: Tsdb,
    receiver: str,
    total: int,
    start_ms: int,
    *,
    more: bool,
) -> dict[str, Any]:
    """One `plantwatch run` with ``mqtt.receiver: receiver``: drains its session, then latency and memory."""
    service = Plantwatch(folder, broker, tsdb)
    if args.model_dir:
        (service.folder / "models").mkdir(exist_ok=True)
    text = config_text(service.folder, broker, tsdb, service.api_port, receiver, models=args.model_dir)
    service.config.write_text(text)
    service.start()
    try:
        first, last = drain(service, total, timeout_s=1800, servers=server_pids(broker, tsdb))
        rate = (last.done - first.done) / (last.at - first.at)
        cpu_per_100k = (last.cpu_s - first.cpu_s) / (last.done - first.done) * 100_000
        print(
            f"plantwatch run (receiver: {receiver}): {rate:,.0f} frames/s scored end to end ({first.done:,.0f} "
            f"already done at its first /metrics answer); {cpu_per_100k:.1f} CPU s per 100,000 frames "
            "(the service process only)",
            flush=True,
        )
        figures: dict[str, Any] = {"plantwatch_per_s": round(rate), "cpu_s_per_100k_frames": round(cpu_per_100k, 1)}
        spent = {name: last.machine[name] - first.machine[name] for name in last.machine}
        figures["drain_cpu_s_per_100k_frames"] = per_100k(spent, last.done - first.done)
        figures["drain_cores_busy"] = round(spent["machine"] / (last.at - first.at), 2)
        figures[f"rss_mb_{args.assets}_assets"] = round(tree_rss_mb(service.pid or 0), 1)
        figures.update(measure_latency(service, broker, args, args.paced_rate or rate / 2))
        if more and args.more_assets:
            added = asset_names(args.assets, args.more_assets)
            spacing = frame_spacing_ms(args)
            frames = {a: frame_lines(args.more_frames, start_ms, 1000 + i, spacing) for i, a in enumerate(added)}
            expect = verdict_rows(service.metrics()) + args.more_assets * args.more_frames
            fill(broker.port, frames)
            drain(service, expect, timeout_s=3600)
            rss = tree_rss_mb(service.pid or 0)
            alone = _rss_mb(service.pid or 0) or float("nan")
            print(
                f"RSS {rss:.0f} MiB with {args.assets + args.more_assets} assets (the service process "
                f"{alone:.0f}, its receiver child {rss - alone:.0f})",
                flush=True,
            )
            figures[f"rss_mb_{args.assets + args.more_assets}_assets"] = round(rss, 1)
            figures[f"rss_mb_{args.assets + args.more_assets}_assets_service"] = round(alone, 1)
        figures["written"] = service.metrics().get("plantwatch_readings_written_total", 0.0)
    finally:
        service.stop()
    return figures


def frame_spacing_ms(args: argparse.Namespace) -> int:
    """How far apart the filled frames of one asset are stamped: 100 ms, or as far apart as the paced
    phase's will come when that is further (``--paced-rate``, or PACED_GUESS_PER_S when it is half the
    drain's, not known yet). The feature window's length in time is ``window_samples`` times the
    baseline's spacing, so paced rows coming far slower than the baseline's would fill it with fewer
    rows, whose noisier features are rightly anomalous: with 1,000 assets at 100 ms, the paced phase
    opened 220 alerts in 30 s. (Rows coming faster fill it with more, which only quiets the features.
    Not closer than 100 ms: an asset's first 30 s of readings find its sensors, and the frames of a
    short fill would all wait in that discovery.)"""
    return max(FILL_SPACING_MS, round(1000 * args.assets / (args.paced_rate or PACED_GUESS_PER_S)))


def too_few_frames(args: argparse.Namespace) -> str | None:
    """Why ``--frames`` over ``--assets`` cannot be measured, if it cannot: the service finds an asset's
    sensors once a reading comes stamped more than ``DISCOVERY_S`` after its first, so an asset whose
    frames span no more than that never completes a row, and the drain would wait for verdicts until
    its timeout (30,100 frames over 100 assets did: 30.0 s each)."""
    per_asset, spacing = args.frames // max(args.assets, 1), frame_spacing_ms(args)
    least = math.floor(DISCOVERY_S * 1000 / spacing) + 2  # the first frame, and spacings beyond DISCOVERY_S
    if per_asset >= least:
        return None
    return (
        f"--frames {args.frames:,} over --assets {args.assets:,} gives each asset {per_asset:,} frames "
        f"{spacing} ms apart, spanning {max(per_asset - 1, 0) * spacing / 1000:g} s; the service finds an asset's "
        f"sensors once its readings span more than {DISCOVERY_S:g} s (detector.max_staleness_s), so give each at "
        f"least {least:,} frames (--frames >= {least * args.assets:,})"
    )


def per_100k(cpu_s: dict[str, float], frames: float) -> dict[str, float]:
    return {name: round(seconds / frames * 100_000, 1) for name, seconds in cpu_s.items()}


def print_budget(figures: dict[str, Any], bare_per_s: float) -> None:
    """Where the machine's CPU went in the drain, and how many cores the goal's rate would need at that cost."""
    cpu = figures["drain_cpu_s_per_100k_frames"]
    named = ("service", "receiver", "broker", "tsdb")
    others = cpu["machine"] - sum(cpu[name] for name in named)
    print(
        f"    CPU s per 100,000 frames in the drain: the service {cpu['service']:.1f}, its receiver child "
        f"{cpu['receiver']:.1f}, Mosquitto {cpu['broker']:.1f}, VictoriaMetrics {cpu['tsdb']:.1f}, the rest of "
        f"the machine {others:.1f}: {cpu['machine']:.1f} in all, {figures['drain_cores_busy']:.2f} of "
        f"{os.cpu_count()} cores busy; {GOAL_RATIO} of the ceiling ({GOAL_RATIO * bare_per_s:,.0f} frames/s) "
        f"at that cost would need {figures['cores_at_goal']:.1f} cores",
        flush=True,
    )


def tree_rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (``mqtt.receiver: process``'s receiver)."""
    return sum(_rss_mb(p) or 0.0 for p in [pid, *children(pid)]) or float("nan")


def measure_latency(service: Plantwatch, broker: Broker, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """Publish→verdict at ``rate`` frames/s over the learned assets."""
    before_metrics = service.metrics()
    done_before = verdict_rows(before_metrics)
    argv = ["pace", "--port", str(broker.port), "--assets", str(args.assets), "--rate", f"{rate:.0f}"]
    paced = run_json([*argv, "--seconds", str(args.latency_s)], args.latency_s + 120)
    wait_for(lambda: verdict_rows(service.metrics()) >= done_before + paced["sent"], 120, "paced frames scored")
    after_metrics = service.metrics()
    figures: dict[str, Any] = {"paced_per_s": round(paced["per_s"]), "paced_sent": paced["sent"]}
    # Normal running: an alert storm would make this phase measure the alert manager (docs/throughput.md).
    opened = ("plantwatch_alerts_opened_total", "plantwatch_alerts_reopened_total")
    figures["alerts_opened"] = sum(after_metrics.get(k, 0.0) - before_metrics.get(k, 0.0) for k in opened)
    # publish -> verdict, and within it receipt -> acknowledgement (stored): the writer's share
    for name, key in ((LAG, ""), (ACKED, "ack_"), (JUDGED, "judged_")):
        before, after = histogram(before_metrics, name), histogram(after_metrics, name)
        if name == LAG:  # rows over 600 s old are the backlog's (an hour old), not the paced frames
            figures["backlog_rows_in_window"] = (after[-1][1] - before[-1][1]) - (after[-2][1] - before[-2][1])
            before, after = before[:-1], after[:-1]
        for q in (50, 99):
            figures[f"{key}p{q}_ms"] = round(1000 * quantile(before, after, q / 100), 1)
    print(
        f"publish→verdict at {paced['per_s']:,.0f} frames/s: p50 {figures['p50_ms']:.0f} ms, p99 "
        f"{figures['p99_ms']:.0f} ms (receipt→stored and acknowledged: p50 {figures['ack_p50_ms']:.0f} ms, "
        f"p99 {figures['ack_p99_ms']:.0f} ms; receipt→verdict of each batch's oldest delivery: p50 "
        f"{figures['judged_p50_ms']:.0f} ms, p99 {figures['judged_p99_ms']:.0f} ms); "
        f"{figures['alerts_opened']:.0f} alerts opened or reopened meanwhile; one asset's frames "
        f"{1000 * args.assets / paced['per_s']:.0f} ms apart, the baseline's {frame_spacing_ms(args)} ms",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000, help="frames filled into each session")
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--more-assets", type=int, default=900, help="assets added for the memory figure (0: none)")
    parser.add_argument("--more-frames", type=int, default=650, help="frames per added asset (baseline_rows is 600)")
    parser.add_argument("--latency-s", type=float, default=20.0)
    parser.add_argument(
        "--paced-rate", type=float, default=0.0, help="frames/s of the latency phase (default: half the drain's rate)"
    )
    parser.add_argument(
        "--model-dir",
        action="store_true",
        help="set detector.model_dir, as configs/docker.yaml does (checkpoints and the readings log on disk)",
    )
    parser.add_argument(
        "--receivers",
        nargs="+",
        default=["thread", "process"],
        choices=["thread", "process"],
        help="mqtt.receiver settings measured, in this order (the last also gets the memory figure)",
    )
    args = parser.parse_args()
    refused = too_few_frames(args)
    if refused:
        parser.error(refused)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args, Path(tmp))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
