"""What a poller of the alert API costs the live ingest: readings/s with and without `GET /alerts?updated_since=`.

    python bench/polling_cost.py [--seconds 25] [--repeats 3] [--rate 10] [--alerts 10000]

The goal (issue): "Polling `GET /alerts?updated_since=…` at 10 requests/s while ingesting at full
rate costs < 5 % of ingest throughput".

Starts its own Mosquitto and VictoriaMetrics on free loopback ports (tests/servers.py, as
bench/ingest_throughput.py does), fills a SQLite alert store with N alerts (bench/alerts_api.py's
``fill``), makes a read-scope API key, and runs the whole service in this process: the pipeline
with the settings of bench/ingest_throughput.py, and the HTTP API on a free loopback port served
as ``plantwatch run`` serves it (``plantwatch.service.wiring.serve``: uvicorn with the lifespan that
starts the pipeline, the root logger at INFO with uvicorn's access log, here to a file, and the
start-up heap frozen). ``serve`` also takes over SIGINT/SIGTERM and cannot be stopped from a
bench, so its few lines are repeated in :func:`start_service`.

Each run publishes a fresh batch of 8-sensor JSON frames (event time continuing from the previous
run) from one ``plantwatch replay --fast`` process per asset, as bench/ingest_throughput.py does
(its ``_write_csv`` writes the log), and counts readings written (``plantwatch_readings_written_total``:
durably written and acknowledged; one reading = one frame of 8 values) between write completions:

* first to last write: the service's first write of the batch until all of it is written, while
  the publishers compete for the 2 cores at first (bench/ingest_throughput.py's figure, without
  the publishers' start-up);
* alone: from the first write after every publisher exited: the service draining the broker's
  backlog, sharing the machine only with the broker and VictoriaMetrics.

Runs go a b a b ... a, with (a) first and last, on the same running service (the 2-core machine is
noisy; a steady drift affects (a) and (b) alike, and each (b) is also compared with the mean of the
two (a) runs beside it):

* (a) no request reaches the API;
* (b) a poller in a separate process (as a SCADA poller is; it must not share the service's GIL)
  calls ``GET /alerts`` at ``--rate`` requests/s over one keep-alive httpx connection with the key:
  ``updated_since`` once, then the ``X-Next-Cursor`` of each answer, as the README's polling section
  describes. It caught up over the stored alerts before the first run
  (from 1970), so the runs measure a poller that is up to date, as one is in operation.

Before the runs, a first batch lets every asset learn its baseline and a second sizes the batches
to about ``--seconds`` each; then, with no ingest, the service's CPU per poll is measured, and one
run of full size is made and not counted (the first one was faster than the rest every time). Prints
per run readings/s, this process's CPU per reading and the CPU the rest of the machine used (the
broker, VictoriaMetrics, the poller, anything else running: a run with much more is suspect); then
the medians, the cost in percent of (a)'s median and the median of the paired costs (the verdict
says "unclear" when one is under 5 % and the other not), and the poller's achieved rate and p50/p99
latency; then one JSON line. 3 to 4 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

# bench/ingest_throughput.py also puts tests/ on sys.path, for its `servers` import and ours.
from alerts_api import fill
from ingest_throughput import SENSORS, _write_csv, bench_settings, start_publishers
from reliability_kit import machine_busy
from servers import run_mosquitto, run_victoria

from alerts.store import SqliteAlertStore
from api.keys import KeyFile
from ingest.replay import as_log
from plantwatch.service.listen import bind_api, listening_url
from plantwatch.service.wiring import Service, build_service, freeze_startup_heap

WRITTEN = "plantwatch_readings_written_total"
FIRST_TS_NS = 1_700_000_000 * 10**9
STEP_NS = 10**8  # 10 rows per second of event time, as bench/ingest_throughput.py
LEARN_ROWS = 2_000  # per asset: more than detector.baseline_rows (600), so the runs are all scoring
SIZING_SECONDS = 15.0  # also a warm-up: the first run after the baselines had been slow more often than not
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"  # plantwatch.cli.main's


# --------------------------------------------------------------------------------------- the poller


def poller(conn: Connection, base: str, token: str, since: str, rate: float, limit: int) -> None:
    """Runs in its own process. Commands over ``conn``: ``catch_up`` (poll until a page is not full),
    ``start`` (poll until the next command, ``stop``), ``quit``; each run answers with its figures."""
    period = 1.0 / rate
    seen: dict[int, str] = {}  # id -> updated_at: what a poller has already handled
    cursor: str | None = None
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:  # keep-alive
        while True:
            command = conn.recv()
            if command == "quit":
                return
            times: list[float] = []
            rows = changes = 0
            started = due = time.monotonic()
            while True:
                wait = due - time.monotonic()
                if command == "start" and conn.poll(max(wait, 0.0)):
                    conn.recv()  # "stop"
                    break
                if command == "catch_up" and wait > 0:
                    time.sleep(wait)
                # The first poll asks from `since`; every answer in the order of changes carries
                # X-Next-Cursor, and a poller then follows it alone (the README's polling section).
                params = {"cursor": cursor} if cursor is not None else {"updated_since": since}
                params["limit"] = str(limit)
                t0 = time.perf_counter()
                resp = client.get("/alerts", params=params)
                times.append(time.perf_counter() - t0)
                resp.raise_for_status()
                page = resp.json()
                rows += len(page)
                for alert in page:
                    changes += seen.get(alert["id"]) != alert["updated_at"]
                    seen[alert["id"]] = alert["updated_at"]
                cursor = resp.headers["X-Next-Cursor"]
                due = max(due + period, time.monotonic() - period)  # late: no burst to catch up
                if command == "catch_up" and len(page) < limit:
                    break
            elapsed = time.monotonic() - started
            conn.send({"requests": len(times), "seconds": elapsed, "rows": rows, "changes": changes, "times": times})


@dataclass
class Poller:
    process: multiprocessing.process.BaseProcess
    conn: Connection

    def start(self) -> None:
        """Poll at the rate until :meth:`stop`."""
        self.conn.send("start")

    def stop(self) -> dict[str, Any]:
        return self.run("stop")

    def run(self, command: str) -> dict[str, Any]:
        self.conn.send(command)
        result: dict[str, Any] = self.conn.recv()
        return result

    def quit(self) -> None:
        with contextlib.suppress(OSError):  # it failed already (its traceback is above)
            self.conn.send("quit")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def start_poller(base: str, token: str, rate: float, limit: int) -> Poller:
    # spawn: this process runs threads (uvicorn, paho, the pipeline), which fork would copy half-way.
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    since = "1970-01-01T00:00:00Z"  # a poller with no position yet: everything stored
    process = ctx.Process(target=poller, args=(theirs, base, token, since, rate, limit), daemon=True)
    process.start()
    theirs.close()  # the poller's end is its own now: if it fails, recv() here ends with EOFError
    return Poller(process, ours)


# --------------------------------------------------------------------------------------- the service


def start_service(service: Service) -> tuple[str, Callable[[], None]]:
    """Serve the API (its lifespan starts the pipeline) as ``plantwatch.service.wiring.serve`` does,
    on a free loopback port; returns its base URL and a function that stops it."""
    sockets = bind_api("127.0.0.1", 0)
    config = uvicorn.Config(service.app, log_config=None, log_level=service.settings.log_level.lower(), lifespan="on")
    server = uvicorn.Server(config)
    freeze_startup_heap()
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name="bench-api", daemon=True)
    thread.start()
    base = listening_url(sockets)
    deadline = time.monotonic() + 30
    while not service.pipeline.source.connected.is_set():
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start; see its log")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True  # the lifespan's shutdown stops the pipeline and closes the store
        thread.join(timeout=30)

    return base, stop


@dataclass
class Batch:
    frames: int  # written from the batch's first write to its last
    seconds: float
    drain_frames: int  # written once every publisher had exited: the service alone with a backlog at the broker
    drain_seconds: float
    service_cpu_us: float  # this process's CPU time per frame of the batch (the bench's own loop is a trifle)
    other_cores: float  # CPU of everything but this process and the publishers: broker, database, poller, others

    @property
    def rate(self) -> float:
        return self.frames / self.seconds

    @property
    def drain_rate(self) -> float:
        return self.drain_frames / self.drain_seconds if self.drain_seconds > 0 else float("nan")


class Publishing:
    """Batches of frames for every asset, event time continuing from one batch to the next."""

    def __init__(self, service: Service, folder: Path, broker: str, assets: int) -> None:
        self.service = service
        self.folder = folder
        self.broker = broker
        self.assets = assets
        self.next_row = 0
        self.rng = np.random.default_rng(0)

    def batch(self, rows: int) -> Batch:
        """Publish ``rows`` frames per asset as fast as one replay process per asset can; wait for them."""
        ts = FIRST_TS_NS + (self.next_row + np.arange(rows, dtype=np.int64)) * STEP_NS
        self.next_row += rows
        csv_path = self.folder / "log.csv"
        _write_csv(csv_path, as_log(ts, SENSORS, self.rng.normal(0, 1, size=(rows, len(SENSORS)))))
        counters = self.service.counters
        before = counters.get(WRITTEN)
        total = before + rows * self.assets
        cpu_before, children_before, machine_before = time.process_time(), children_cpu(), machine_busy()
        wall_before = time.monotonic()
        publishers = start_publishers(csv_path, self.broker, self.assets)
        try:
            # Times of writes (the counter moves a whole batch of readings at once): what was written
            # between two of them is exact, however long a batch of the writer takes.
            first = None  # (when, written) at the batch's first write
            published = None  # written when every publisher had exited
            drain = None  # (when, written) at the first write after that
            while (written := counters.get(WRITTEN)) < total:
                now = time.monotonic()
                if first is None and written > before:
                    first = (now, written)
                if published is None:
                    codes = [p.poll() for p in publishers]
                    if any(code not in (None, 0) for code in codes):
                        raise RuntimeError("a plantwatch replay process failed (its error is above)")
                    if all(code == 0 for code in codes):
                        published = written
                elif drain is None and written > published:
                    drain = (now, written)
                if self.service.pipeline.fatal.is_set():
                    raise RuntimeError("the pipeline stopped; see the service log")
                time.sleep(0.01)
            done = time.monotonic()
        except BaseException:
            for publisher in publishers:
                publisher.kill()
            raise
        finally:
            for publisher in publishers:
                publisher.wait(timeout=60)
        if first is None:  # the whole batch in one write
            raise RuntimeError("batch too small to time; raise --seconds")
        drain = drain or (done, total)  # the publishers exited after the last write (a tiny batch)
        service_cpu = time.process_time() - cpu_before
        other = machine_busy() - machine_before - service_cpu - (children_cpu() - children_before)
        return Batch(
            frames=int(total - first[1]),
            seconds=done - first[0],
            drain_frames=int(total - drain[1]),
            drain_seconds=done - drain[0],
            service_cpu_us=1e6 * service_cpu / (rows * self.assets),
            other_cores=other / (time.monotonic() - wall_before),
        )


def children_cpu() -> float:
    """CPU seconds of the child processes waited for so far (the publishers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------- the runs


def percentiles_ms(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def api_cpu_per_request(poller: Poller, seconds: float) -> tuple[float, int]:
    """The service's CPU milliseconds per poll with no ingest: this process's CPU over ``seconds`` of
    polling, less what it spends as long without (the lower of the quiet spells before and after:
    the one before may still hold the tail of the warm-up's work); and the number of polls."""

    def quiet_cpu_per_s() -> float:
        cpu, started = time.process_time(), time.monotonic()
        time.sleep(seconds)
        return (time.process_time() - cpu) / (time.monotonic() - started)

    before = quiet_cpu_per_s()
    cpu, started = time.process_time(), time.monotonic()
    poller.start()
    time.sleep(seconds)
    poll = poller.stop()
    polling_cpu, polling_s = time.process_time() - cpu, time.monotonic() - started
    idle_per_s = min(before, quiet_cpu_per_s())
    busy = polling_cpu - idle_per_s * polling_s
    return 1000 * busy / max(poll["requests"], 1), int(poll["requests"])


def cost(a: list[float], b: list[float]) -> tuple[float, float, float, list[float]]:
    """Medians of (a) and (b), (b)'s loss in percent of (a)'s median, and each (b)'s loss against the
    mean of the two (a) runs beside it (runs a b a ... b a: a steady drift cancels)."""
    median_a, median_b = statistics.median(a), statistics.median(b)
    pairs = [100 * (1 - y / ((a[i] + a[i + 1]) / 2)) for i, y in enumerate(b)]
    return median_a, median_b, 100 * (median_a - median_b) / median_a, pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=25.0, help="length of each run (default 25)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs with polling (b), each between two without (a) (default 3)"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="poller requests per second (default 10)")
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts stored before the runs (default 10,000)")
    parser.add_argument("--limit", type=int, default=1000, help="the poller's page size, `limit` (default 1,000)")
    parser.add_argument("--assets", type=int, default=4, help="assets, one publisher process each (default 4)")
    parser.add_argument("--service-log", help="keep the service's log in this file (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or args.rate <= 0 or args.alerts < 0 or not 1 <= args.limit <= 10_000:
        parser.error("--seconds and --rate must be > 0, --repeats >= 1, --alerts >= 0, --limit 1-10,000")

    with (
        tempfile.TemporaryDirectory() as tmp_name,
        run_mosquitto(Path(tmp_name) / "mq") as mq,
        run_victoria(Path(tmp_name) / "vm") as vm,
    ):
        tmp = Path(tmp_name)
        started = time.perf_counter()
        seeding = SqliteAlertStore(tmp / "alerts.db")
        if args.alerts:
            fill(seeding, args.alerts)
        seeding.close()
        seeded_s = time.perf_counter() - started
        keys = KeyFile(tmp / "keys.json")
        token = keys.create("scada", "read")
        settings = bench_settings(mq.url, vm.url, tmp, api__keys_file=str(keys.path))
        log_file = args.service_log or str(tmp / "service.log")
        logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, filename=log_file, force=True)
        service = build_service(settings)
        base, stop_service = start_service(service)
        poller = start_poller(base, token, args.rate, args.limit)
        try:
            print(
                f"{args.alerts:,} alerts stored in {seeded_s:.1f} s; service on {base} (read key), "
                f"{args.assets} publishers; service log: {log_file}",
                flush=True,
            )
            publishing = Publishing(service, tmp, mq.url, args.assets)
            learn = publishing.batch(LEARN_ROWS)
            sizing = publishing.batch(round(SIZING_SECONDS * learn.rate / args.assets))
            rows = max(1000, round(args.seconds * sizing.rate / args.assets))
            print(
                f"warm-up: baselines learned ({learn.rate:,.0f} readings/s), then {sizing.rate:,.0f} readings/s: "
                f"{rows:,} frames per asset per run",
                flush=True,
            )
            catch_up = poller.run("catch_up")
            p50, p99 = percentiles_ms(catch_up["times"])
            print(
                f"poller caught up over {catch_up['rows']:,} alerts in {catch_up['requests']} requests "
                f"({catch_up['seconds']:.1f} s, p50 {p50:.1f} ms, p99 {p99:.1f} ms)",
                flush=True,
            )
            api_cpu_ms, idle_polls = api_cpu_per_request(poller, 10.0)
            print(f"no ingest: the service spends {api_cpu_ms:.1f} ms CPU per poll ({idle_polls} polls)", flush=True)
            # The first full run after the warm-up came out fastest in every session's runs (5,837 and
            # 5,836/s against 5,230-5,660 for the later (a) runs): it would bias the first pair.
            warm = publishing.batch(rows)
            print(f"run 0 (a, warm-up, not counted): {warm.rate:5,.0f}/s, alone {warm.drain_rate:5,.0f}/s", flush=True)
            runs: dict[str, list[Batch]] = {"a": [], "b": []}
            polls: list[dict[str, Any]] = []
            for i, kind in enumerate("a" + "ba" * args.repeats):
                if kind == "b":
                    poller.start()
                batch = publishing.batch(rows)
                line = (
                    f"run {i + 1} ({kind}) {batch.frames:>7,} readings in {batch.seconds:4.1f} s: {batch.rate:5,.0f}/s,"
                    f" alone {batch.drain_rate:5,.0f}/s ({batch.drain_seconds:4.1f} s)  "
                    f"[service CPU {batch.service_cpu_us:3.0f} us/reading, others {batch.other_cores:.2f} cores]"
                )
                if kind == "b":
                    poll = poller.stop()
                    polls.append(poll)
                    p50, p99 = percentiles_ms(poll["times"])
                    line += (
                        f"  poller {poll['requests'] / poll['seconds']:5.2f} req/s, p50 {p50:.1f} ms, "
                        f"p99 {p99:.1f} ms, {poll['rows'] / max(poll['requests'], 1):.1f} rows/req, "
                        f"{poll['changes']} changes"
                    )
                else:
                    line += "  no polling"
                runs[kind].append(batch)
                print(line, flush=True)
        finally:
            poller.quit()
            stop_service()

    median_a, median_b, loss, pairs = cost([b.rate for b in runs["a"]], [b.rate for b in runs["b"]])
    alone_a, alone_b, alone_loss, alone_pairs = cost(
        [b.drain_rate for b in runs["a"]], [b.drain_rate for b in runs["b"]]
    )
    cpu = {kind: statistics.median(b.service_cpu_us for b in batches) for kind, batches in runs.items()}
    times = [t for poll in polls for t in poll["times"]]
    achieved = sum(p["requests"] for p in polls) / sum(p["seconds"] for p in polls)
    p50, p99 = percentiles_ms(times)
    spread = 100 * (max(b.rate for b in runs["a"]) - min(b.rate for b in runs["a"])) / median_a
    # The service is one Python process: the CPU its API takes, it takes from the pipeline's share.
    expected = 100 * api_cpu_ms / 1000 * args.rate / (cpu["a"] / 1e6 * median_a)

    def pct(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    print(
        f"readings/s, first to last write: median (a) {median_a:,.0f} (runs {spread:.0f} % apart), (b) {median_b:,.0f}"
        f" -> cost {loss:.1f} % (pairs {pct(pairs)} %)"
    )
    print(
        f"readings/s, service alone after the publishers: median (a) {alone_a:,.0f}, (b) {alone_b:,.0f}"
        f" -> cost {alone_loss:.1f} % (pairs {pct(alone_pairs)} %)"
    )
    print(
        f"service CPU per reading, medians: (a) {cpu['a']:.0f} us, (b) {cpu['b']:.0f} us "
        f"({100 * (cpu['b'] - cpu['a']) / cpu['a']:+.1f} %); {api_cpu_ms:.1f} ms CPU per poll x {args.rate:g}/s "
        f"= {expected:.1f} % of the CPU the service spends at full ingest"
    )
    print(
        f"poller: {achieved:.2f} req/s achieved (asked {args.rate:g}), p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"over {len(times):,} requests"
    )
    paired = statistics.median(pairs)
    verdict = "holds" if max(loss, paired) < 5 else "NOT met" if min(loss, paired) >= 5 else "unclear"
    print(
        f"goal, cost < 5 %: {verdict} (first to last write: {loss:.1f} % from the medians, "
        f"{paired:.1f} % the median of the pairs)"
    )
    summary = {
        "alerts": args.alerts,
        "seconds": args.seconds,
        "rate": args.rate,
        "a_readings_per_s": [round(b.rate) for b in runs["a"]],
        "b_readings_per_s": [round(b.rate) for b in runs["b"]],
        "median_a": round(median_a),
        "median_b": round(median_b),
        "cost_percent": round(loss, 2),
        "paired_cost_percent": round(paired, 2),
        "alone_cost_percent": round(alone_loss, 2),
        "service_cpu_us_per_reading": {kind: round(v, 1) for kind, v in cpu.items()},
        "api_cpu_ms_per_poll": round(api_cpu_ms, 2),
        "expected_cost_percent": round(expected, 2),
        "poller_req_per_s": round(achieved, 2),
        "poller_p50_ms": round(p50, 2),
        "poller_p99_ms": round(p99, 2),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
