"""Crash and outage scenarios on real servers: readings lost or duplicated, verdicts missing, spurious alerts.

    python bench/reliability.py [--scenario N ...] [--readings 50000] [--quick]

Each scenario starts its own Mosquitto (persistence on, ``max_queued_messages 0``) and VictoriaMetrics
on free loopback ports and ``plantwatch run`` as a subprocess (a temp YAML: ``detector.model_dir``
set, 300 baseline rows, alerts in SQLite), publishes 8-sensor JSON frames of 5 assets with two step
faults (bench/reliability_data.py), disturbs the run, waits until the service has settled, and
counts:

* readings published, stored (distinct (asset, instant) with all 8 sensors in VictoriaMetrics),
  duplicated (raw − distinct samples of one sensor: VictoriaMetrics keeps both samples of a
  redelivery) and lost;
* verdicts missing: instants with a stored verdict (``anomaly_score``) in an undisturbed reference
  run of the same readings and not in this one, per asset; in the notes, how many verdicts stored in
  both differ in score (a row scored again after a crash must get the very same verdict);
* alerts spurious / missing: (asset, kind, started_at) from ``GET /alerts`` against the reference;
* crashes (service exits nobody asked for), peak RSS (VmHWM) of the service's processes, and the p99
  latency of ``/healthz`` polled 10×/s throughout (503 is expected during an outage: latency counts).

Scenarios: 1 VictoriaMetrics down for 60 s; 2 plantwatch SIGKILLed mid-stream and restarted; 3
Mosquitto restarted (SIGTERM); 4 Mosquitto SIGKILLed (``autosave_interval 10``); 5 hostile payloads
among good readings; 6 a slow sink (VictoriaMetrics SIGSTOPped 2 s of every 2.5 s); 7 a soak of 24 h
of event time. All seven take about 17 minutes on a 2-core machine; ``--quick`` shrinks every size
for a smoke run (under a minute to two for one scenario, about 5 minutes for all). Needs the Debian
packages mosquitto and victoria-metrics, and root (as the integration tests). Figures and their
reading: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_data import missing  # noqa: E402
from reliability_run import Bench, Outcome, Sizes  # noqa: E402
from reliability_scenarios import SCENARIOS  # noqa: E402


def row(name: str, got: Outcome, reference: Outcome | None) -> list[str]:
    if reference is not None:
        verdicts_missing = f"{len(missing(reference.verdicts.by_asset, got.verdicts.by_asset)):,}"
        spurious = str(len(got.alerts - reference.alerts))
        alerts_missing = str(len(reference.alerts - got.alerts))
        alerts = f"{spurious} / {alerts_missing} (of {len(reference.alerts)})"
    else:
        verdicts_missing, alerts = "n/a", f"n/a ({len(got.alerts)} alerts)"
    probe = got.probe
    health = f"{probe.p99_ms:.1f} ({sum(probe.statuses.values())} polls, {probe.statuses.get(503, 0)} × 503)"
    return [
        name,
        f"{got.published:,}",
        f"{got.stored:,}",
        f"{got.duplicated:,}",
        f"{len(got.lost):,}",
        verdicts_missing,
        alerts,
        str(got.crashes),
        f"{got.peak_rss_mb:.0f}",
        health,
        "; ".join(got.notes + _measured(got, reference)),
    ]


def _measured(got: Outcome, reference: Outcome | None) -> list[str]:
    """The service's own figures worth a note: in-flight peak, rescored readings, rejects by reason."""
    notes = [f"max unacked {got.probe.max_unacked:,.0f}"]
    rescored = got.metrics.get("plantwatch_readings_rescored_total", 0)
    if rescored:
        notes.append(f"{rescored:,.0f} readings rescored, {got.verdicts.repeated:,} verdicts written twice")
    rejects = {
        k.split('"')[1]: v for k, v in got.metrics.items() if k.startswith("plantwatch_messages_rejected_total{")
    }
    if rejects:
        notes.append("rejected: " + ", ".join(f"{reason} {n:,.0f}" for reason, n in sorted(rejects.items())))
    if got.probe.refused:
        notes.append(f"{got.probe.refused} polls unanswered while down")
    if reference is not None:
        notes.append(f"{got.verdicts.differing(reference.verdicts):,} verdicts differ from the reference")
        notes.append(f"reference: peak RSS {reference.peak_rss_mb:.0f} MB")
    return notes


HEADER = [
    "scenario",
    "published",
    "stored",
    "duplicated",
    "lost",
    "verdicts missing",
    "alerts spurious / missing",
    "crashes",
    "peak RSS MB",
    "/healthz p99 ms",
    "notes",
]


def table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=int, nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS))
    parser.add_argument("--readings", type=int, default=50_000, help="frames of 8 sensors per scenario")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (logs, stores)")
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes.full(args.readings)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        bench = Bench(args.keep or Path(tmp), sizes)
        rows = []
        for number in args.scenario:
            name, scenario = SCENARIOS[number]
            print(f"scenario {number}: {name} ...", file=sys.stderr, flush=True)
            got, reference = scenario(bench)
            rows.append(row(f"{number}. {name}", got, reference))
            print(table(rows[-1:]), file=sys.stderr, flush=True)
    print(table(rows))
    command = " ".join(["python", "bench/reliability.py", *sys.argv[1:]])
    print(f"\n{command}  ({(time.monotonic() - started) / 60:.1f} min; sizes: {sizes})")


if __name__ == "__main__":
    main()
