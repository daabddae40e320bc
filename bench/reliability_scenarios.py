"""The seven scenarios of bench/reliability.py: each publishes, disturbs, and returns its outcome with the
undisturbed reference run of the same readings (None where there is none to compare with)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from reliability_data import Dataset, Publishing, make_dataset, publish
from reliability_hostile import mixed_frames
from reliability_kit import wait_for
from reliability_run import Bench, Outcome, World, run

Result = tuple[Outcome, Outcome | None]
AUTOSAVE_S = 10


def tsdb_outage(bench: Bench) -> Result:
    """VictoriaMetrics stopped for ``outage_s`` while all but the first tenth of the readings arrive."""
    dataset = bench.dataset(bench.sizes.readings)
    frames, outage_s = dataset.frames, bench.sizes.outage_s

    def disturb(w: World) -> int:
        head = len(frames) // 10
        publish(w.broker.port, frames[:head], "pub-before")
        wait_for(lambda: w.written() >= head, 120, "the first tenth stored")
        w.tsdb.stop()
        down = time.monotonic()
        publish(w.broker.port, frames[head:], "pub-during")
        arrived_s = time.monotonic() - down
        time.sleep(max(0.0, outage_s - arrived_s))
        w.notes.append(f"{len(frames) - head:,} published in the first {arrived_s:.0f} s of a {outage_s:.0f} s outage")
        w.tsdb.start()
        return len(frames)

    return run(bench.root, "tsdb-outage", dataset, disturb, bench.sizes), bench.reference(dataset)


def plantwatch_kill(bench: Bench) -> Result:
    """SIGKILL after 1.5 checkpoint intervals of a stream paced over 2.5 (the faults at 30 % and 80 %
    of it: one before the kill, one after); restarted 3 s later while the stream goes on."""
    dataset = bench.dataset(bench.sizes.readings)
    frames, checkpoint_s = dataset.frames, bench.sizes.checkpoint_s

    def disturb(w: World) -> int:
        publishing = Publishing(w.broker.port, frames, rate=len(frames) / (2.5 * checkpoint_s)).start()
        time.sleep(1.5 * checkpoint_s)
        written, published = w.written(), publishing.published
        w.service.kill()
        time.sleep(3)
        w.service.start()
        publishing.join()
        w.notes.append(f"killed with {published:,} published and {written:,.0f} written")
        return len(frames)

    return run(bench.root, "plantwatch-kill", dataset, disturb, bench.sizes), bench.reference(dataset)


def broker_restart(bench: Bench, kill: bool = False) -> Result:
    """Mosquitto stopped (SIGTERM: it saves its state; or SIGKILL) right after 60 % of the readings
    reached it, while plantwatch still drains them; 2 s later started again; the rest published once
    plantwatch has reconnected."""
    dataset = bench.dataset(bench.sizes.readings)
    frames = dataset.frames
    name = "broker-kill" if kill else "broker-restart"
    config = f"autosave_interval {AUTOSAVE_S}\nautosave_on_changes false\n" if kill else ""
    seen: dict[str, object] = {}

    def disturb(w: World) -> int:
        head = int(len(frames) * 0.6)
        if kill:  # the broker's first autosave holds plantwatch's session
            time.sleep(AUTOSAVE_S + 1)
        seen["publishing"] = publish(w.broker.port, frames[:head], "pub-before")
        backlog = head - w.written()
        w.broker.kill() if kill else w.broker.stop()
        seen["stopped_at"] = time.monotonic()
        time.sleep(2)
        w.broker.start()
        w.wait_connected()
        publish(w.broker.port, frames[head:], "pub-after")
        w.notes.append(f"{'SIGKILL' if kill else 'SIGTERM'} with {backlog:,.0f} of {head:,} not yet written")
        return len(frames)

    outcome = run(bench.root, name, dataset, disturb, bench.sizes, config)
    if kill and outcome.lost:
        publishing, stopped_at = seen["publishing"], seen["stopped_at"]
        assert isinstance(publishing, Publishing) and isinstance(stopped_at, float)
        outcome.notes.append(loss_ages(outcome.lost, dataset, publishing, stopped_at))
    return outcome, bench.reference(dataset)


def loss_ages(lost: set[tuple[str, int]], dataset: Dataset, publishing: Publishing, stopped_at: float) -> str:
    """When the readings the broker lost had reached it (publish order gives each frame's index; the
    publisher's marks its time): the loss is the broker's if all came after its last autosave."""
    position = {asset: a for a, asset in enumerate(dataset.assets)}
    index = [(ts // 1000 - dataset.start_s) * len(dataset.assets) + position[asset] for asset, ts in lost]
    counts, times = np.array(publishing.marks).T
    ages = stopped_at - np.interp(index, counts, times)
    return (
        f"the {len(lost):,} lost had reached the broker {ages.min():.1f}-{ages.max():.1f} s before its SIGKILL "
        f"(autosave_interval {AUTOSAVE_S} s)"
    )


def broker_kill(bench: Bench) -> Result:
    return broker_restart(bench, kill=True)


def hostile(bench: Bench) -> Result:
    """Hostile payloads and made-up assets among good readings; the good ones compared with a reference."""
    sizes = bench.sizes
    dataset = bench.dataset(sizes.good_hostile)
    frames = mixed_frames(dataset, sizes.hostile, sizes.fakes, wide=20)

    def disturb(w: World) -> int:
        publish(w.broker.port, frames)
        w.notes.append(
            f"{sizes.hostile:,} hostile payloads, 5 of 2 MB, 20 of 4,000 sensors, {sizes.fakes:,} fake assets"
        )
        return len(dataset.frames)

    return run(bench.root, "hostile", dataset, disturb, sizes), bench.reference(dataset)


def slow_sink(bench: Bench) -> Result:
    """All readings published at once while VictoriaMetrics is SIGSTOPped 2 s of every 2.5 s."""
    dataset = bench.dataset(bench.sizes.readings)

    def disturb(w: World) -> int:
        publishing = Publishing(w.broker.port, dataset.frames).start()
        deadline, bursts = time.monotonic() + 900, 0
        while w.written() < len(dataset.frames) and time.monotonic() < deadline:
            w.tsdb.pause()
            time.sleep(2.0)
            w.tsdb.resume()
            time.sleep(0.5)
            bursts += 1
        publishing.join()
        w.notes.append(f"{bursts} stops of 2 s")
        return len(dataset.frames)

    return run(bench.root, "slow-sink", dataset, disturb, bench.sizes), bench.reference(dataset)


def soak(bench: Bench) -> Result:
    """Three assets, ``soak_rows`` each 1 s apart, published as fast as the broker takes them; RSS over time."""
    dataset = make_dataset(3 * bench.sizes.soak_rows, 3)

    def disturb(w: World) -> int:
        publish(w.broker.port, dataset.frames)
        return len(dataset.frames)

    outcome = run(bench.root, "soak", dataset, disturb, bench.sizes)
    outcome.notes.append(rss_trend(outcome.probe.rss_mb, len(dataset.frames)))
    return outcome, None


def rss_trend(samples: list[tuple[float, float]], readings: int) -> str:
    """RSS at the start and end of the run and its slope over the second half (least squares)."""
    if len(samples) < 4:
        return "too few RSS samples"
    t, rss = np.array(samples).T
    half = len(t) // 2
    slope = float(np.polyfit(t[half:], rss[half:], 1)[0]) * 60
    return (
        f"RSS {rss[0]:.0f} MB at start, {rss.max():.0f} MB max, {rss[-1]:.0f} MB at end over {t[-1] / 60:.1f} min "
        f"({readings / max(t[-1], 1):,.0f} readings/s); second-half slope {slope:+.1f} MB/min"
    )


SCENARIOS: dict[int, tuple[str, Callable[[Bench], Result]]] = {
    1: ("VictoriaMetrics down", tsdb_outage),
    2: ("plantwatch SIGKILL + restart", plantwatch_kill),
    3: ("Mosquitto restart (SIGTERM)", broker_restart),
    4: ("Mosquitto SIGKILL", broker_kill),
    5: ("hostile payloads", hostile),
    6: ("slow sink (VM SIGSTOP bursts)", slow_sink),
    7: ("soak, 24 h event time", soak),
}
