"""Live ingest throughput: MQTT frames → plantwatch pipeline → VictoriaMetrics, every reading acked after write.

    python bench/ingest_throughput.py [--rows 50000] [--assets 4]

Starts its own Mosquitto and VictoriaMetrics (Debian packages) on free loopback ports, runs the
pipeline in-process with the same wiring as `plantwatch run`, publishes 8-sensor JSON frames as
fast as one `plantwatch replay` process per asset can (separate processes, so publishing does not
compete with the pipeline for the GIL), and prints frames/s from first publish until the last
reading is durably written and acknowledged.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers import run_mosquitto, run_victoria  # noqa: E402

from ingest.logfile import SensorLog  # noqa: E402
from ingest.replay import as_log  # noqa: E402
from plantwatch.service.wiring import build_service  # noqa: E402
from plantwatch.settings import Settings, load_settings  # noqa: E402

SENSORS = tuple(f"sensor_{i}" for i in range(8))


def _write_csv(path: Path, log: SensorLog) -> None:
    with path.open("w") as fh:
        fh.write("timestamp," + ",".join(log.sensors) + "\n")
        for ts, row in zip(log.timestamps_ns.tolist(), log.values.tolist(), strict=True):
            fh.write(f"{ts}," + ",".join(f"{v:.6f}" for v in row) + "\n")


def bench_settings(broker_url: str, victoria_url: str, folder: Path, **more: Any) -> Settings:
    """The service's settings for an ingest benchmark: the default configuration, with the benchmark's
    broker and VictoriaMetrics, 10,000 readings in flight, and the alert store in ``folder``."""
    return load_settings(
        None,
        mqtt__url=broker_url,
        mqtt__client_id="bench",
        mqtt__max_in_flight=10_000,
        storage__kind="influxdb",
        influx__url=victoria_url,
        influx__token="bench",
        alerts__store_url=f"sqlite:///{folder / 'alerts.db'}",
        **more,
    )


def start_publishers(csv_path: Path, broker_url: str, assets: int) -> list[subprocess.Popen[bytes]]:
    """One ``plantwatch replay --fast`` process per asset (``asset-0``...), publishing ``csv_path``:
    separate processes, so publishing does not compete with the service for the GIL."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "plantwatch.cli", "replay", str(csv_path), "--broker", broker_url]
            + ["--asset", f"asset-{a}", "--fast"],
            stdout=subprocess.DEVNULL,
        )
        for a in range(assets)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="frames per asset")
    parser.add_argument("--assets", type=int, default=4)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_mosquitto(Path(tmp) / "mq") as mq,
        run_victoria(Path(tmp) / "vm") as vm,
    ):
        settings = bench_settings(mq.url, vm.url, Path(tmp))
        service = build_service(settings)
        service.pipeline.start()
        assert service.pipeline.source.connected.wait(10)
        total = args.rows * args.assets
        rng = np.random.default_rng(0)
        ts = 1_700_000_000 * 10**9 + np.arange(args.rows, dtype=np.int64) * 10**8
        log = as_log(ts, SENSORS, rng.normal(0, 1, size=(args.rows, len(SENSORS))))
        csv_path = Path(tmp) / "log.csv"
        _write_csv(csv_path, log)
        started = time.monotonic()
        publishers = start_publishers(csv_path, mq.url, args.assets)
        for publisher in publishers:
            assert publisher.wait() == 0
        published_s = time.monotonic() - started
        while service.counters.get("plantwatch_readings_written_total") < total:
            time.sleep(0.01)
        written_s = time.monotonic() - started
        service.pipeline.stop()
        stored = vm.count_samples('{__name__="readings_sensor_0"}')
        print(
            f"{total:,} frames x 8 sensors from {args.assets} publishers: published in {published_s:.2f} s "
            f"({total / published_s:,.0f}/s); all durably written and acked after {written_s:.2f} s "
            f"({total / written_s:,.0f} frames/s, {total * 8 / written_s:,.0f} values/s); "
            f"last write {1000 * (written_s - published_s):.0f} ms after the last publish; "
            f"stored in VictoriaMetrics: {stored:,} of {total:,}"
        )


if __name__ == "__main__":
    main()
