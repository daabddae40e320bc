"""Sensor faults and silences apart from process anomalies: the watch (event time), the alert
manager's sensor_fault / stale_data alerts, and both on the live detector stage."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from alerts.lifecycle import AlertManager
from alerts.store import SqliteAlertStore
from detector.config import MonitorConfig
from detector.sensor_health import FLAT, OUT_OF_RANGE, SensorWatch
from detector.types import Contribution, Verdict
from ingest.messages import Reading
from plantwatch.service.detector_stage import DetectorStage
from plantwatch.service.scoring_queue import ScoringQueue
from plantwatch.service.sensor_checks import SensorCheckConfig, SensorChecks
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

S = 1_000_000_000
T0 = 1_714_564_800 * S


def feed(watch: SensorWatch, start_s: int, values: Sequence[dict[str, float]]) -> dict[str, object]:
    """One reading a second from ``start_s``; the faults after the last one."""
    return dict(watch.observe([(T0 + (start_s + i) * S, v) for i, v in enumerate(values)]))


def test_a_reading_that_sticks_is_flat_after_the_time_and_its_own_habit() -> None:
    watch = SensorWatch(flat_after_s=120)
    rng = np.random.default_rng(1)
    assert feed(watch, 0, [{"flow": float(x)} for x in rng.normal(size=300)]) == {}
    assert feed(watch, 300, [{"flow": 1.5}] * 100) == {}  # stuck for 99 s: not yet
    faults = feed(watch, 400, [{"flow": 1.5}] * 30)  # 129 s
    assert list(faults) == ["flow"]
    fault = watch.faults()["flow"]
    assert (fault.reason, fault.value, fault.since_ns) == (FLAT, 1.5, T0 + 300 * S)
    assert feed(watch, 430, [{"flow": 1.7}]) == {}  # moving again


def test_a_sensor_still_by_habit_is_judged_against_its_longest_spell() -> None:
    watch = SensorWatch(flat_after_s=120)
    spells = [{"valve": 0.0}] * 1000 + [{"valve": 1.0}] * 10 + [{"valve": 0.0}] * 2000
    assert feed(watch, 0, spells) == {}  # 2,000 s still, after a spell of 999 s: under 3 x 999
    assert list(feed(watch, 3010, [{"valve": 0.0}] * 1000)) == ["valve"]  # 2,999 s + 1,000 s


def test_a_sensor_that_never_changed_is_never_flat_and_a_late_reading_is_ignored() -> None:
    watch = SensorWatch(flat_after_s=10)
    assert feed(watch, 0, [{"setpoint": 50.0}] * 1000) == {}
    watch.observe([(T0 + 5 * S, {"setpoint": 49.0})])  # late: says nothing of now
    assert watch.tracks_["setpoint"].changed is False


def test_values_beyond_the_instrument_limits_are_out_of_range_until_back() -> None:
    watch = SensorWatch(limits={"temp": (-40.0, 250.0)})
    assert feed(watch, 0, [{"temp": 20.0}, {"temp": 21.0}]) == {}
    feed(watch, 2, [{"temp": -9999.0}, {"temp": -9999.0}])
    fault = watch.faults()["temp"]
    assert (fault.reason, fault.value, fault.low, fault.high, fault.since_ns) == (
        OUT_OF_RANGE,
        -9999.0,
        -40.0,
        250.0,
        T0 + 2 * S,
    )
    assert feed(watch, 4, [{"temp": 22.0}]) == {}


def test_silent_sensors_are_named_with_how_long_counting_one_never_heard_from_the_first_reading() -> None:
    watch = SensorWatch()
    feed(watch, 0, [{"a": 1.0, "b": float(i)} for i in range(10)])
    feed(watch, 10, [{"a": float(i)} for i in range(400)])  # b stops at 9 s; a goes on to 409 s
    assert watch.silent(300, ["a", "b", "c"]) == {"b": 400 * S, "c": 409 * S}
    assert watch.silent(500, ["a", "b"]) == {}


# -- the alert manager -----------------------------------------------------------------------------


def anomalous(asset: str, ts_s: int, sensor: str) -> Verdict:
    top = (Contribution(sensor, 0.9, "low", 0.0, 0.5, 1.5, "spread"), Contribution("other", 0.1, "high", 2, 0, 1))
    return Verdict(asset=asset, ts_ns=T0 + ts_s * S, score=5.0, probability=0.999, anomaly=True, contributions=top)


def silent(*sensors: str) -> tuple[Contribution, ...]:
    return tuple(Contribution(s, 1.0 / len(sensors), "silent", 300.0, 0.0, 0.0, "silent") for s in sensors)


def kinds(store: SqliteAlertStore) -> list[tuple[str, str]]:
    return sorted((a.kind, a.state) for a in store.list())


def test_a_stale_sensor_opens_stale_data_and_resolves_the_anomaly_it_left_open(store: SqliteAlertStore) -> None:
    counters = Counters()
    manager = AlertManager(store, resolve_after_s=60, counters=counters)
    manager.observe(anomalous("pump-1", 0, "flow"))
    events = manager.observe_condition("pump-1", "stale_data", T0 + 400 * S, silent("flow"))
    assert [(e.kind, e.alert.kind) for e in events] == [("opened", "stale_data"), ("resolved", "anomaly")]
    assert kinds(store) == [("anomaly", "resolved"), ("stale_data", "open")]
    assert counters.get("plantwatch_sensor_alerts_opened_total", kind="stale_data") == 1
    assert manager.observe_condition("pump-1", "stale_data", T0 + 430 * S, ()) == []  # quiet 30 s of 60
    [resolved] = manager.observe_condition("pump-1", "stale_data", T0 + 461 * S, ())
    assert (resolved.kind, resolved.alert.resolved_at_ns) == ("resolved", T0 + 461 * S)


def test_a_faulty_sensor_opens_sensor_fault_and_its_anomalies_are_not_the_process(store: SqliteAlertStore) -> None:
    manager = AlertManager(store, resolve_after_s=60, counters=Counters())
    manager.observe(anomalous("pump-1", 0, "flow"))  # the model saw the reading stick first
    stuck = (Contribution("flow", 1.0, "flat", 1.5, 1.5, 1.5, "flat"),)
    manager.observe_condition("pump-1", "sensor_fault", T0 + 120 * S, stuck)
    assert kinds(store) == [("anomaly", "resolved"), ("sensor_fault", "open")]
    assert manager.observe(anomalous("pump-1", 130, "flow")) == []  # driven by the stuck sensor: no alert
    [opened] = manager.observe(anomalous("pump-1", 140, "bearing_temp"))  # another sensor: the process
    assert (opened.kind, opened.alert.kind) == ("opened", "anomaly")
    more = (*stuck, Contribution("speed", 0.5, "high", 9e9, 0, 3000, "out_of_range"))
    manager.observe_condition("pump-1", "sensor_fault", T0 + 150 * S, more)
    fault = next(a for a in store.list() if a.kind == "sensor_fault")
    manager.flush()
    stored = store.get(fault.id or 0)
    assert stored is not None and [c.sensor for c in stored.top_sensors] == ["flow", "speed"]
    assert [c.within_expected for c in stored.top_sensors] == [False, False]


def test_condition_alerts_continue_across_a_restart(store: SqliteAlertStore) -> None:
    first = AlertManager(store, resolve_after_s=60, counters=Counters())
    first.observe_condition("fan-2", "stale_data", T0, silent("rpm"))
    again = AlertManager(store, resolve_after_s=60, counters=Counters())
    assert again.observe_condition("fan-2", "stale_data", T0 + S, silent("rpm")) == []  # the same alert
    assert kinds(store) == [("stale_data", "open")]
    with pytest.raises(ValueError, match="kind must be one of"):
        again.observe_condition("fan-2", "anomaly", T0, ())


# -- on the detector stage -------------------------------------------------------------------------


class _NullSink:
    def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        pass


def stage(store: SqliteAlertStore, config: SensorCheckConfig) -> DetectorStage:
    manager = AlertManager(store, resolve_after_s=30, counters=Counters())
    return DetectorStage(
        ScoringQueue(),
        sink=_NullSink(),  # type: ignore[arg-type]
        alerts=manager,
        detector_config=lambda asset: MonitorConfig(baseline_rows=600),
        counters=Counters(),
        health=StageHealth(),
        stop=threading.Event(),
        sensor_checks=SensorChecks(config, manager),
    )


def readings(start_s: int, n: int, stuck: str | None = None, drop: str | None = None) -> list[Reading]:
    rng = np.random.default_rng(start_s)
    out = []
    for i in range(n):
        values = {name: float(v) for name, v in zip("abc", rng.normal(size=3), strict=True)}
        if stuck:
            values[stuck] = 0.25
        if drop:
            del values[drop]
        out.append(Reading("pump-1", T0 + (start_s + i) * S, values, {"line": "L1"}))
    return out


def open_kinds(store: SqliteAlertStore) -> set[str]:
    return {a.kind for a in store.list(state="open")}


def test_a_stuck_sensor_raises_a_sensor_fault_not_a_process_anomaly(store: SqliteAlertStore) -> None:
    live = stage(store, SensorCheckConfig(flat_after_s=60))
    live._process(readings(0, 900))
    assert live.monitors["pump-1"].is_warm and open_kinds(store) == set()
    stuck = readings(900, 600, stuck="b")
    for at in range(0, len(stuck), 10):  # batches as the live pipeline hands them on
        live._process(stuck[at : at + 10])
    assert open_kinds(store) == {"sensor_fault"} and store.list(kind="anomaly") == []
    [fault] = store.list(kind="sensor_fault")
    assert [(c.sensor, c.feature, c.value) for c in fault.top_sensors] == [("b", "flat", 0.25)]
    assert fault.started_at_ns == T0 + 900 * S  # stuck since then (recognised flat_after_s later)
    assert T0 + 1490 * S <= fault.last_anomalous_at_ns < T0 + 1500 * S
    charted = live.scores.since("pump-1", None, 10_000)  # the scored rows, for GET /assets/{asset}/scores
    assert len(charted) == 1500 - 600 and charted[-1].ts_ns == T0 + 1499 * S


def test_a_sensor_that_stops_raises_stale_data_and_an_asset_that_stops_too(store: SqliteAlertStore) -> None:
    live = stage(store, SensorCheckConfig(stale_after_s=120))
    live._process(readings(0, 700))
    live._process(readings(700, 200, drop="c"))  # c silent from 700 s; rows no longer complete
    [stale] = store.list(kind="stale_data", state="open")
    assert [(c.sensor, c.feature) for c in stale.top_sensors] == [("c", "silent")]
    assert stale.tags == (("line", "L1"),)  # the readings' topic tags
    assert stale.started_at_ns == T0 + 699 * S  # silent since c's last reading
    live._process(readings(900, 100))
    live._process(readings(1000, 40))
    assert open_kinds(store) == set()  # c is back: resolved after resolve_after_s of event time

    checks = live.sensor_checks
    assert checks is not None
    checks._arrived["pump-1"] -= 121  # the whole asset sends nothing for 121 s by the wall clock
    live._silence_checked_at -= 2
    live._check_silence_now_and_then()
    [silent_asset] = store.list(kind="stale_data", state="open")
    assert sorted(c.sensor for c in silent_asset.top_sensors) == ["a", "b", "c"]
    assert silent_asset.started_at_ns == T0 + 1039 * S  # the asset's newest reading


def test_settings_name_bad_limits(tmp_path: Path) -> None:
    from plantwatch.settings import ConfigError, load_settings

    config = tmp_path / "plantwatch.yaml"
    config.write_text("storage: {kind: sqlite}\nalerts: {sensor_limits: {temp: [250, -40]}}\n")
    with pytest.raises(ConfigError, match=r"alerts.sensor_limits.*temp: \[250, -40\]: give \[low, high\]"):
        load_settings(config)


def test_a_relearned_asset_is_watched_for_silence_again_from_its_next_readings(store: SqliteAlertStore) -> None:
    live = stage(store, SensorCheckConfig(stale_after_s=120))
    live._process(readings(0, 700))
    assert live.request_relearn("pump-1")
    live._process([])  # the relearn is applied: the asset's watch is forgotten
    checks = live.sensor_checks
    assert checks is not None and "pump-1" not in checks.watches
    checks._arrived = {asset: at - 121 for asset, at in checks._arrived.items()}  # quiet 121 s since
    live._silence_checked_at -= 2
    live._check_silence_now_and_then()  # read the forgotten watch: a KeyError every second
    assert store.list(kind="stale_data") == []
    live._process(readings(700, 10))
    checks._arrived["pump-1"] -= 121
    live._silence_checked_at -= 2
    live._check_silence_now_and_then()
    [silent] = store.list(kind="stale_data", state="open")
    assert silent.started_at_ns == T0 + 709 * S
