"""Which sensors a baseline saw move one way only (detector/transitions.py), and the advice it gives."""

from __future__ import annotations

import numpy as np

from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from detector.transitions import one_way_moves


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    out, level = np.empty(n), 0.0
    for i, shock in enumerate(rng.normal(0.0, np.sqrt(1 - phi * phi), n).tolist()):
        level = phi * level + shock
        out[i] = level
    return out


def _load_steps(n: int, loads: tuple[float, ...]) -> np.ndarray:
    """A load held at each of ``loads`` in turn, with 2-minute ramps between them (1 Hz)."""
    load = np.repeat(loads, n // len(loads)).astype(float)
    for k in range(1, len(loads)):
        at = k * (n // len(loads))
        load[at : at + 120] = np.linspace(loads[k - 1], loads[k], 120)
    return load


def _pump(loads: tuple[float, ...], seed: int = 1, n: int = 3600) -> tuple[np.ndarray, np.ndarray]:
    """Flow following the load, a temperature lagging it by 10 minutes, and a sensor that follows neither."""
    rng = np.random.default_rng(seed)
    load = _load_steps(n, loads)
    heat = np.empty(n)
    level = 60.0 * load[0] ** 2
    for i, value in enumerate((60.0 * load**2).tolist()):
        level += (value - level) / 600.0
        heat[i] = level
    X = np.column_stack(
        [120.0 * load + 0.8 * _ar1(rng, n, 0.95), 20.0 + heat + 0.2 * _ar1(rng, n, 0.99), rng.normal(size=n)]
    )
    return np.arange(n, dtype=np.int64) * 10**9, X


def test_a_baseline_whose_load_only_rose_names_what_rose_and_noise_names_nothing() -> None:
    ts, X = _pump((0.55, 0.75, 0.95))
    assert one_way_moves(ts, X, 15.0).tolist() == [1, 1, 0]  # flow and the lagging temperature; not the noise
    ts, X = _pump((0.95, 0.55, 0.75))  # a fall and a rise: the flow moved both ways
    assert one_way_moves(ts, X, 15.0)[0] == 0
    ts, X = _pump((0.95, 0.55))
    assert one_way_moves(ts, X, 15.0).tolist()[:2] == [-1, -1]
    rng = np.random.default_rng(2)
    wandering = np.column_stack([_ar1(rng, 3600, 0.99) for _ in range(4)])  # noise that wanders, no moves
    assert not one_way_moves(ts, wandering, 15.0).any()
    assert not one_way_moves(ts[:300], X[:300], 15.0).any()  # five blocks: too few to judge


def _loaded(loads: tuple[float, ...], seed: int = 3, n: int = 3600) -> tuple[np.ndarray, np.ndarray]:
    """Flow, pressure and current, which all follow the load (so none drifts on its own), and noise."""
    rng = np.random.default_rng(seed)
    load = _load_steps(n, loads)
    X = np.column_stack(
        [
            120.0 * load + 0.8 * rng.normal(size=n),
            3.0 * load**2 + 0.03 * rng.normal(size=n),
            2.0 + 10.0 * load**3 + 0.1 * rng.normal(size=n),
            rng.normal(size=n),
        ]
    )
    return np.arange(n, dtype=np.int64) * 10**9, X


SENSORS = ("flow", "pressure", "current", "other")


def test_the_monitor_advises_a_baseline_that_saw_one_way_and_keeps_it_across_a_restart() -> None:
    config = MonitorConfig(baseline_rows=3600)
    monitor = AssetMonitor("pump-7", config, SENSORS)
    monitor.process_arrays(*_loaded((0.55, 0.75, 0.95)))
    assert monitor.drifting_sensors == ()
    advice, one_way = monitor.baseline_advice(), monitor.one_way_advice()
    assert one_way is not None and one_way.startswith("baseline of pump-7: flow, pressure, current only rose while")
    assert advice is not None and one_way.removeprefix("baseline of pump-7: ") in advice
    restored = AssetMonitor("pump-7", config, SENSORS).set_state(monitor.get_state())
    assert restored.one_way_advice() == one_way
    older = {key: value for key, value in monitor.get_state().items() if key != "one_way"}
    assert AssetMonitor("pump-7", config, SENSORS).set_state(older).one_way_advice() is None
    both_ways = AssetMonitor("pump-7", config, SENSORS)
    both_ways.process_arrays(*_loaded((0.75, 0.55, 0.95)))
    assert both_ways.model_ is not None and both_ways.one_way_advice() is None
