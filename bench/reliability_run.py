"""Running one scenario of bench/reliability.py: its servers, the service, the disturbance, what is left.

:func:`run` starts a fresh Mosquitto, VictoriaMetrics and ``plantwatch run`` in the scenario's own
folder, calls the scenario's ``disturb`` (which publishes and disturbs, with the :class:`World` in
hand), waits until the service settles, and reads the stores into an :class:`Outcome`.
:class:`Bench` keeps one undisturbed reference run per dataset size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reliability_data import Dataset, Verdicts, make_dataset, publish, stored_readings, verdicts
from reliability_kit import Broker, Plantwatch, Probe, Tsdb, wait_for

ASSETS = 5


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``quick`` for a smoke run."""

    readings: int  # frames per scenario (5 assets)
    good_hostile: int  # scenario 5's good frames
    hostile: int  # scenario 5's hostile payloads
    fakes: int  # scenario 5's made-up assets
    soak_rows: int  # scenario 7's rows per asset (1 s apart)
    outage_s: float  # scenario 1's VictoriaMetrics outage
    checkpoint_s: float  # detector.checkpoint_interval_s

    @classmethod
    def full(cls, readings: int) -> Sizes:
        return cls(readings, 2 * readings, readings // 5, 10_000, 86_400, 60.0, 30.0)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(5_000, 5_000, 700, 1_500, 3_600, 10.0, 5.0)


@dataclass
class World:
    """One scenario's servers and service, in its own folder."""

    folder: Path
    broker: Broker
    tsdb: Tsdb
    service: Plantwatch
    dataset: Dataset
    notes: list[str] = field(default_factory=list)

    def written(self) -> float:
        return self.service.metrics().get("plantwatch_readings_written_total", 0.0)

    def wait_connected(self) -> None:
        def connected() -> bool:
            return bool(self.service.http.get(f"{self.service.base}/healthz").json().get("mqtt_connected"))

        wait_for(connected, 120, "plantwatch reconnected to the broker", 0.2)


@dataclass
class Outcome:
    """What a run left: readings, verdicts and alerts in the stores, and the probe's figures."""

    published: int
    stored: int
    duplicated: int
    lost: set[tuple[str, int]]
    verdicts: Verdicts
    alerts: set[tuple[str, str, str]]
    crashes: int
    peak_rss_mb: float
    probe: Probe
    metrics: dict[str, float]
    notes: list[str]


def run(
    root: Path, name: str, dataset: Dataset, disturb: Callable[[World], int], sizes: Sizes, broker_config: str = ""
) -> Outcome:
    """Start the servers and the service, ``disturb`` (which publishes and returns how many frames),
    let the service settle, and read what is stored."""
    folder = root / name
    broker, tsdb = Broker(folder / "broker", broker_config), Tsdb(folder / "tsdb")
    broker.start()
    tsdb.start()
    service = Plantwatch(folder / "plantwatch", broker, tsdb, sizes.checkpoint_s)
    world = World(folder, broker, tsdb, service, dataset)
    try:
        service.start()
        with Probe(service) as probe:
            published = disturb(world)
            service.settle(len(dataset.frames), timeout_s=600)
        return _outcome(world, published, probe)
    finally:
        service.stop()
        tsdb.stop()
        broker.stop()


def _outcome(world: World, published: int, probe: Probe) -> Outcome:
    stored = stored_readings(world.tsdb, world.dataset.assets)
    metrics = world.service.metrics()
    world.service.note_peak()
    return Outcome(
        published=published,
        stored=len(stored.complete),
        duplicated=stored.duplicated,
        lost=world.dataset.keys - stored.complete,
        verdicts=verdicts(world.tsdb),
        alerts=world.service.alerts(),
        crashes=world.service.crashes + int(world.service.pid is None),
        peak_rss_mb=world.service.peak_rss_mb,
        probe=probe,
        metrics=metrics,
        notes=world.notes,
    )


def undisturbed(world: World) -> int:
    publish(world.broker.port, world.dataset.frames)
    return len(world.dataset.frames)


@dataclass
class Bench:
    root: Path
    sizes: Sizes
    _references: dict[int, Outcome] = field(default_factory=dict)

    def reference(self, dataset: Dataset) -> Outcome:
        """The same readings through an undisturbed service (once per dataset size)."""
        key = len(dataset.frames)
        if key not in self._references:
            self._references[key] = run(self.root, f"reference-{key}", dataset, undisturbed, self.sizes)
        return self._references[key]

    def dataset(self, readings: int) -> Dataset:
        return make_dataset(readings, ASSETS)
