"""Maintenance forecasts across operating regimes: what a health trend per regime changes, in the live detector stage.

    python bench/maintenance_regimes.py [--days 4] [--seeds 1,2,3] [--json OUT]      # ~10 minutes

The pump of ``bench/normal_running.py`` at 1 Hz (8 autocorrelated sensors that follow its load, three
operating points at 0.55 / 0.75 / 0.95 of full load, 20 minutes each in the first hour, 2-minute
ramps between points, a daily ambient cycle of +-3 C), run so that the plant spends more and more
time at full load: each dwell at 0.95 lasts 1x the usual (20 min to 3 h) at the start, growing to 4x
at the end. Over the last 36 hours a bearing wears out at every load alike: ``bearing_temp`` rises by
up to 12 C and ``vibration`` by up to 0.15 g, quadratically in time.

Each seed runs twice through :class:`plantwatch.service.detector_stage.DetectorStage` (what
``plantwatch run`` runs, storage left out) with the embedded default configuration and a one-hour
baseline (``detector.baseline_rows: 3600``, as in ``bench/normal_running.py``: the default 600 rows
would see only the first operating point): as it is (one health trend per asset), and with
``maintenance.operating_settings: {speed: 30}`` (speed is 1450 rpm x load through a 20 s lag, so the
points are 290 rpm apart; its noise is 3 rpm). From the alert store (``kind=maintenance``): alerts
opened before the wear began (false), and when the first one after it opened.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from normal_running import BASELINE_ROWS, DAY, HOUR, LOADS, PUMP_SENSORS, START_NS, pump  # noqa: E402

from alerts.lifecycle import AlertManager  # noqa: E402
from alerts.store import SqliteAlertStore  # noqa: E402
from ingest.logfile import SensorLog  # noqa: E402
from ingest.messages import Reading  # noqa: E402
from plantwatch.service.detector_stage import DetectorStage  # noqa: E402
from plantwatch.service.scoring_queue import ScoringQueue  # noqa: E402
from plantwatch.service.wiring import _maintenance_tracker  # noqa: E402
from plantwatch.service.writer import StageHealth  # noqa: E402
from plantwatch.settings import load_settings  # noqa: E402
from telemetry.counters import Counters  # noqa: E402

ASSET = "pump-1"
WEAR_HOURS = 36
BATCH = 1000


def busier_profile(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The three points, 20 minutes each in the first hour; then dwells at a random other point, those at
    full load lasting 1x growing to 4x the usual over the run; 2-minute ramps; no stops."""
    load = np.empty(n)
    t, current = 0, LOADS[0]
    segments = [(HOUR // len(LOADS), point) for point in LOADS]
    while t < n:
        if segments:
            dwell, target = segments.pop(0)
        else:
            target = float(rng.choice([v for v in LOADS if v != current]))
            stretch = 1.0 + 3.0 * t / n if target == LOADS[-1] else 1.0
            dwell = int(rng.integers(20 * 60, 3 * HOUR) * stretch)
        ramp = 120 if t > 0 else 0
        seg = np.concatenate(
            [np.linspace(current, target, ramp, endpoint=False), np.full(max(dwell - ramp, 0), target)]
        )
        load[t : t + seg.size] = seg[: n - t]
        t += seg.size
        current = target
    return load, np.ones(n, dtype=bool)


def with_wear(log: SensorLog) -> tuple[SensorLog, float]:
    """The bearing wears over the last WEAR_HOURS: the log, and the hour (from its start) the wear begins."""
    n = len(log)
    start = n - WEAR_HOURS * HOUR
    w = np.clip((np.arange(n) - start) / (n - start), 0.0, None) ** 2
    values = log.values.copy()
    values[:, PUMP_SENSORS.index("bearing_temp")] += 12.0 * w
    values[:, PUMP_SENSORS.index("vibration")] += 0.15 * w
    return SensorLog(log.timestamps_ns, log.timestamp_text, log.sensors, values), start / HOUR


class _NullSink:
    def write_verdicts(self, verdicts: object) -> None:
        pass


def run(log: SensorLog, regimes: bool, folder: Path) -> dict[str, Any]:
    """The log through the live detector stage; the maintenance alerts it opened and the regimes it learned."""
    overrides: dict[str, Any] = {"maintenance__operating_settings": {"speed": 30.0}} if regimes else {}
    settings = load_settings(storage__kind="sqlite", detector__baseline_rows=BASELINE_ROWS, **overrides)
    tracker = _maintenance_tracker(settings, None)
    store = SqliteAlertStore(Path(tempfile.mkdtemp(dir=folder)) / "alerts.db")  # a store of its own per run
    stage = DetectorStage(
        ScoringQueue(),
        sink=_NullSink(),  # type: ignore[arg-type]
        alerts=AlertManager(store, resolve_after_s=settings.alerts.resolve_after_s, counters=Counters()),
        detector_config=settings.detector.as_config,
        counters=Counters(),
        health=StageHealth(),
        stop=threading.Event(),
        maintenance=tracker,
    )
    started = time.perf_counter()
    names, ts, rows = log.sensors, log.timestamps_ns.tolist(), log.values.tolist()
    for i in range(0, len(rows), BATCH):
        batch = zip(ts[i : i + BATCH], rows[i : i + BATCH], strict=True)
        stage._process([Reading(ASSET, t, dict(zip(names, r, strict=True))) for t, r in batch])
    stage.alerts.flush()
    opened = sorted((a.started_at_ns - START_NS) / 1e9 for a in store.list(kind="maintenance"))
    anomaly_alerts = len(store.list(kind="anomaly"))
    [entry] = tracker.snapshot()
    store.close()
    return {
        "opened_at_h": [round(t / HOUR, 2) for t in opened],
        "anomaly_alerts": anomaly_alerts,
        "regimes": len(entry["regimes"]),
        "rows_between_regimes": entry["rows_between_regimes"],
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = []
    print("seed  trends      false (before wear)  first after wear  anomaly alerts  regimes  rows between  full load")
    # alert commits on tmpfs where there is one: the figures are about the trends, not the disk
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            log, wear_at_h = with_wear(pump(seed, args.days, stops=False, profile=busier_profile))
            full = log.values[:, PUMP_SENSORS.index("speed")] > 1300
            days = [full[BASELINE_ROWS + d * DAY : BASELINE_ROWS + (d + 1) * DAY] for d in range(args.days)]
            share = ", ".join(f"{day.mean():.2f}" for day in days)  # of each day's rows
            for regimes in (False, True):
                r = run(log, regimes, Path(tmp))
                false = sum(h < wear_at_h for h in r["opened_at_h"])
                after = [h - wear_at_h for h in r["opened_at_h"] if h >= wear_at_h]
                first = f"{after[0]:+.1f} h" if after else "none"
                results.append({"seed": seed, "per_regime": regimes, "wear_at_h": wear_at_h, "false": false, **r})
                print(
                    f"{seed:4}  {'per regime' if regimes else 'one':10}  {false:19}  {first:>16}"
                    f"  {r['anomaly_alerts']:14}  {r['regimes']:7}  {r['rows_between_regimes']:12}  {share}"
                    f"   ({r['seconds']:.0f} s)",
                    flush=True,
                )
    for regimes in (False, True):
        of = [r for r in results if r["per_regime"] == regimes]
        caught = [r for r in of if any(h >= r["wear_at_h"] for h in r["opened_at_h"])]
        false = sum(r["false"] for r in of)
        name = "per regime" if regimes else "one trend"
        print(f"{name}: {false} false maintenance alerts in {len(of)} runs, the wear caught in {len(caught)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    summary = {
        ("per_regime" if regimes else "one_trend"): {
            "false_alerts": sum(r["false"] for r in results if r["per_regime"] == regimes),
            "runs": sum(r["per_regime"] == regimes for r in results),
        }
        for regimes in (False, True)
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
