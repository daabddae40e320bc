"""Alert lifecycle rules, all driven by event time."""

from __future__ import annotations

import builtins
import dataclasses
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from waiting import wait_until

from alerts.lifecycle import AlertEvent, AlertManager
from alerts.model import RESOLVED_BY_OPERATOR, Alert, AlertAction
from alerts.retrying import AlertStoreStopped, WaitingStore
from alerts.store import SqliteAlertStore
from detector.types import Contribution, Verdict
from telemetry.counters import Counters

S = 1_000_000_000
T0 = 1_700_000_000 * S  # a realistic epoch, far from "now" would matter if the wall clock leaked in


class RecordingStore:
    """In-memory AlertStore that records every write, to check coalescing."""

    def __init__(self, initial: builtins.list[Alert] | None = None) -> None:
        self.rows: dict[int, Alert] = {a.id: a for a in initial or [] if a.id is not None}
        self.inserts = 0
        self.updates: builtins.list[Alert] = []
        self.transactions: builtins.list[int] = []  # the alerts of each update_many

    def insert(self, alert: Alert) -> Alert:
        self.inserts += 1
        new_id = max(self.rows, default=0) + 1
        saved = dataclasses.replace(alert, id=new_id)
        self.rows[new_id] = saved
        return saved

    def update(self, alert: Alert) -> None:
        assert alert.id in self.rows
        self.updates.append(alert)
        self.rows[alert.id] = alert

    def update_many(self, alerts: Sequence[Alert]) -> None:
        self.transactions.append(len(alerts))
        for alert in alerts:
            self.update(alert)

    def latest_activity(self) -> dict[tuple[str, str], int]:
        latest: dict[tuple[str, str], int] = {}
        for alert in self.rows.values():
            key = (alert.asset, alert.kind)
            latest[key] = max(latest.get(key, alert.last_activity_ns), alert.last_activity_ns)
        return latest

    def list(
        self,
        asset: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        since_ns: int | None = None,
        limit: int = 1000,
        acknowledged: bool | None = None,
        updated_since_ns: int | None = None,
        after: tuple[int, int] | None = None,
        severity: str | None = None,
        until_ns: int | None = None,
        tag: tuple[str, str] | None = None,
    ) -> builtins.list[Alert]:
        raise NotImplementedError  # the lifecycle only needs open_alerts()

    def act(self, action: AlertAction, shelved_reason: str | None = None) -> Alert | None:
        raise NotImplementedError  # operators' actions come through the API, not the lifecycle

    def history(self, alert_id: int) -> builtins.list[AlertAction]:
        raise NotImplementedError

    def marked(self, action: str) -> set[int]:
        raise NotImplementedError

    def delivered(self, output: str) -> tuple[int, int] | None:
        raise NotImplementedError  # the outputs read the store, not the lifecycle

    def mark_delivered(self, output: str, upto: tuple[int, int]) -> None:
        raise NotImplementedError

    reads_are_local = True

    def changed_after(self, after: tuple[int, int]) -> bool:
        raise NotImplementedError  # the API's question, not the lifecycle's

    def get(self, alert_id: int) -> Alert | None:
        return self.rows.get(alert_id)

    def open_alerts(self) -> builtins.list[Alert]:
        return sorted((a for a in self.rows.values() if a.state == "open"), key=lambda a: -a.started_at_ns)

    def close(self) -> None:
        pass


def v(
    t_s: float,
    anomaly: bool,
    *,
    asset: str = "pump-1",
    score: float = 1.0,
    probability: float = 0.9,
    sensors: tuple[Contribution, ...] = (),
    warming_up: bool = False,
    unseen: bool = False,
) -> Verdict:
    return Verdict(
        asset, T0 + round(t_s * S), score, probability, anomaly, sensors, warming_up, unseen_operating_point=unseen
    )


def manager(
    store: RecordingStore | SqliteAlertStore,
    counters: Counters | None = None,
    *,
    resolve_after_s: float = 10.0,
    critical_probability: float = 0.999,
    reopen_within_s: float = 0.0,
) -> AlertManager:
    return AlertManager(
        store,
        resolve_after_s=resolve_after_s,
        critical_probability=critical_probability,
        counters=counters or Counters(),
        reopen_within_s=reopen_within_s,
    )


def types(events: builtins.list[AlertEvent]) -> builtins.list[str]:
    return [e.kind for e in events]


def test_opens_on_first_anomaly_and_counts() -> None:
    store, counters = RecordingStore(), Counters()
    m = manager(store, counters)
    assert m.observe(v(0, False)) == []
    sensors = (Contribution("temp", 0.2, "high", 90, 20, 60), Contribution("vib", 0.8, "high", 9, 1, 4))
    events = m.observe(v(1, True, score=4.0, probability=0.95, sensors=sensors))

    assert types(events) == ["opened"]
    alert = events[0].alert
    assert alert.id == 1 and alert.state == "open" and alert.severity == "warning"
    assert alert.started_at_ns == alert.last_anomalous_at_ns == T0 + S
    assert (alert.peak_score, alert.peak_probability) == (4.0, 0.95)
    assert [c.sensor for c in alert.top_sensors] == ["vib", "temp"]  # biggest share first
    assert counters.get("plantwatch_alerts_opened_total") == 1
    assert store.inserts == 1


def test_warming_up_verdicts_are_ignored() -> None:
    store = RecordingStore()
    m = manager(store)
    assert m.observe(v(0, True, warming_up=True)) == []
    assert store.inserts == 0
    m.observe(v(1, True))
    # A warming-up "normal" row long after must not resolve the alert either.
    assert m.observe(v(100, False, warming_up=True)) == []
    assert [a.state for a in m.open_alerts()] == ["open"]


def test_hysteresis_resolves_only_after_quiet_period_in_event_time() -> None:
    counters = Counters()
    m = manager(RecordingStore(), counters, resolve_after_s=10)
    m.observe(v(0, True))
    assert m.observe(v(5, False)) == []
    assert m.observe(v(9.999, False)) == []  # 9.999 s quiet: still open
    events = m.observe(v(10, False))  # exactly resolve_after_s since last anomaly

    assert types(events) == ["resolved"]
    assert events[0].alert.resolved_at_ns == T0 + 10 * S
    assert events[0].alert.state == "resolved"
    assert counters.get("plantwatch_alerts_resolved_total") == 1
    assert m.open_alerts() == []


def test_anomaly_within_window_keeps_alert_open_and_restarts_the_quiet_period() -> None:
    m = manager(RecordingStore(), resolve_after_s=10)
    opened = m.observe(v(0, True))[0].alert
    m.observe(v(8, False))
    m.observe(v(9, True))  # flap back before resolve_after_s elapsed
    assert m.observe(v(18, False)) == []  # 9 s since the last anomaly, not 18 s since the first
    resolved = m.observe(v(19, False))[0].alert
    assert resolved.id == opened.id  # the same alert, no second one opened
    assert resolved.last_anomalous_at_ns == T0 + 9 * S


def test_new_alert_after_resolution() -> None:
    counters = Counters()
    m = manager(RecordingStore(), counters, resolve_after_s=1)
    first = m.observe(v(0, True))[0].alert
    m.observe(v(2, False))
    second = m.observe(v(3, True))
    assert types(second) == ["opened"] and second[0].alert.id != first.id
    assert counters.get("plantwatch_alerts_opened_total") == 2


def test_assets_are_independent() -> None:
    m = manager(RecordingStore(), resolve_after_s=5)
    m.observe(v(0, True, asset="a"))
    m.observe(v(0, True, asset="b"))
    assert types(m.observe(v(6, False, asset="a"))) == ["resolved"]
    assert [a.asset for a in m.open_alerts()] == ["b"]


def test_replay_far_from_wall_clock_uses_only_event_time() -> None:
    """A backtest of year-2001 data must behave exactly like live data."""
    m = manager(RecordingStore(), resolve_after_s=60)
    past = 1_000_000_000 * S
    m.observe(Verdict("p", past, 1.0, 0.9, True))
    assert m.observe(Verdict("p", past + 59 * S, 0.1, 0.1, False)) == []
    events = m.observe(Verdict("p", past + 60 * S, 0.1, 0.1, False))
    assert types(events) == ["resolved"] and events[0].alert.resolved_at_ns == past + 60 * S


def test_severity_escalates_and_never_drops_while_open() -> None:
    m = manager(RecordingStore(), critical_probability=0.999)
    assert m.observe(v(0, True, score=2, probability=0.99))[0].alert.severity == "warning"
    events = m.observe(v(1, True, score=3, probability=0.999))
    assert types(events) == ["updated"] and events[0].alert.severity == "critical"
    m.observe(v(2, True, score=1, probability=0.5))
    assert m.open_alerts()[0].severity == "critical"


def test_opens_directly_as_critical() -> None:
    m = manager(RecordingStore(), critical_probability=0.99)
    assert m.observe(v(0, True, probability=0.995))[0].alert.severity == "critical"


def test_peak_tracks_max_and_top_sensors_come_from_peak_row() -> None:
    peak_sensors = (Contribution("vib", 1.0, "high", 12, 1, 4),)
    m = manager(RecordingStore())
    m.observe(v(0, True, score=2, probability=0.9, sensors=(Contribution("temp", 1.0, "low", 1, 5, 9),)))
    assert types(m.observe(v(1, True, score=5, probability=0.95, sensors=peak_sensors))) == ["updated"]
    # Lower score: no news, and the peak row's sensors stay.
    assert m.observe(v(2, True, score=3, probability=0.92)) == []
    # Higher probability but lower score still raises peak_probability, not the peak row.
    events = m.observe(v(3, True, score=4, probability=0.97, sensors=()))
    alert = events[0].alert
    assert (alert.peak_score, alert.peak_probability, alert.top_sensors) == (5, 0.97, peak_sensors)
    assert alert.last_anomalous_at_ns == T0 + 3 * S


def test_an_unseen_operating_point_is_said_of_the_alert_whose_peak_row_lies_at_one() -> None:
    store = RecordingStore()
    m = manager(store)
    opened = m.observe(v(0, True, score=2, unseen=True))[0].alert
    assert opened.unseen_operating_point and store.rows[1].unseen_operating_point
    # a lower row says nothing of the alert; a new peak row replaces what it says, as its top sensors
    assert m.observe(v(1, True, score=1.5, unseen=False)) == []
    assert m.open_alerts()[0].unseen_operating_point
    events = m.observe(v(2, True, score=4, unseen=False))
    assert not events[0].alert.unseen_operating_point
    resolved = m.observe(v(20, False))[0].alert
    assert resolved.state == "resolved" and not resolved.unseen_operating_point


def test_writes_are_coalesced_to_once_per_event_second() -> None:
    store = RecordingStore()
    m = manager(store, resolve_after_s=5)
    # 10 Hz anomalous stream with a rising score for 3 s: 30 peak changes.
    for i in range(30):
        m.observe(v(i / 10, True, score=float(i)))
    # 1 insert at t=0, then updates at t=1.0 and t=2.0 only.
    assert store.inserts == 1
    assert [(u.last_anomalous_at_ns - T0) / S for u in store.updates] == [1.0, 2.0]
    # Non-anomalous rows within the window: only the pending change (t=2.9) is flushed, once.
    for i in range(30, 60):
        m.observe(v(i / 10, False))
    assert len(store.updates) == 3 and store.updates[-1].peak_score == 29.0
    # Resolution is always written, immediately.
    m.observe(v(7.9, False))
    assert store.updates[-1].state == "resolved" and len(store.updates) == 4


def test_a_batch_writes_its_coalesced_updates_together_at_its_end() -> None:
    """An alert storm: in a batch of the detector, every asset's alert is updated in one transaction
    at the batch's end, as much as coalescing allows; a resolution inside the batch is written at
    once and not undone by the update held back before it."""
    store = RecordingStore()
    m = manager(store, resolve_after_s=5)
    assets = [f"pump-{i}" for i in range(5)]
    for asset in assets:
        m.observe(v(0, True, asset=asset, score=1.0))
    with m.batched():
        for t in (1, 2, 3):
            for asset in assets:
                m.observe(v(t, True, asset=asset, score=float(t)))
        assert store.updates == []  # held back until the batch ends
        m.observe(v(9, False, asset="pump-0"))  # quiet for 6 s: resolved, written at once
        assert [(u.asset, u.state) for u in store.updates] == [("pump-0", "resolved")]
    assert store.transactions == [4]  # the other four, once each, in one transaction
    latest = {u.asset: u for u in store.updates}
    assert latest["pump-0"].state == "resolved"  # not overwritten by its update held back in the batch
    assert all(latest[a].peak_score == 3.0 and latest[a].state == "open" for a in assets[1:])
    # The same updates one at a time, outside a batch: every event second of every asset.
    single = RecordingStore()
    n = manager(single, resolve_after_s=5)
    for t in (0, 1, 2, 3):
        for asset in assets[1:]:
            n.observe(v(t, True, asset=asset, score=float(t) or 1.0))
    assert single.transactions == [] and len(single.updates) == 12
    unnumbered = {u.asset: dataclasses.replace(u, id=None) for u in single.updates}
    assert unnumbered == {a: dataclasses.replace(latest[a], id=None) for a in assets[1:]}  # the same alerts


def test_no_write_for_unchanged_non_anomalous_rows() -> None:
    store = RecordingStore()
    m = manager(store, resolve_after_s=1000)
    m.observe(v(0, True))
    for i in range(1, 100):
        m.observe(v(i, False))
    assert store.inserts == 1 and store.updates == []


def test_flush_writes_pending_changes() -> None:
    store = RecordingStore()
    m = manager(store)
    m.observe(v(0, True, score=1))
    m.observe(v(0.5, True, score=9))  # within the coalescing window: held back
    assert store.updates == []
    m.flush()
    assert [u.peak_score for u in store.updates] == [9]


def test_restart_continues_open_alert(tmp_path: Path) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    counters = Counters()
    first = manager(store, counters, resolve_after_s=10)
    opened = first.observe(v(0, True, score=3, probability=0.9999))[0].alert
    first.observe(v(4, True, score=2))  # last_anomalous_at = 4 s, persisted (>= 1 s later)

    second = manager(store, counters, resolve_after_s=10)  # the "restarted" process
    assert [a.id for a in second.open_alerts()] == [opened.id]
    # Still inside the window measured from the persisted last anomaly: no duplicate, no resolve.
    assert second.observe(v(13, False)) == []
    assert second.observe(v(13.5, True)) == []  # continues the same alert (no "opened")
    events = second.observe(v(23.5, False))
    assert types(events) == ["resolved"]
    resolved = events[0].alert
    assert (resolved.id, resolved.severity, resolved.peak_score) == (opened.id, "critical", 3)
    assert store.list() == [resolved]
    assert counters.get("plantwatch_alerts_opened_total") == 1
    store.close()


def test_reload_ignores_other_kinds() -> None:
    maintenance = Alert(1, "pump-1", "maintenance", "open", T0, T0, None, "warning", 0, 0, ())
    m = manager(RecordingStore([maintenance]))
    assert m.open_alerts() == []
    assert types(m.observe(v(1, True))) == ["opened"]


def test_failed_insert_leaves_no_phantom_alert() -> None:
    class FailingStore(RecordingStore):
        def insert(self, alert: Alert) -> Alert:
            raise OSError("disk full")

    m = manager(FailingStore())
    with pytest.raises(OSError):
        m.observe(v(0, True))
    assert m.open_alerts() == []


@pytest.mark.parametrize(("resolve_after_s", "critical_probability"), [(-1.0, 0.999), (1.0, 0.0)])
def test_rejects_bad_configuration(resolve_after_s: float, critical_probability: float) -> None:
    with pytest.raises(ValueError):
        AlertManager(
            RecordingStore(),
            resolve_after_s=resolve_after_s,
            critical_probability=critical_probability,
            counters=Counters(),
        )


def test_an_anomaly_back_soon_after_a_restart_reopens_the_alert_that_resolved_before_it(
    store: SqliteAlertStore,
) -> None:
    before = manager(store, reopen_within_s=300)
    assert types(before.observe(v(0, True))) == ["opened"]
    assert types(before.observe(v(20, False))) == ["resolved"]
    assert types(before.observe(v(30, True, asset="fan-2"))) == ["opened"]
    assert types(before.observe(v(50, False, asset="fan-2"))) == ["resolved"]
    fan = store.list(asset="fan-2")[0]
    store.act(AlertAction(fan.id or 0, 0, "op", RESOLVED_BY_OPERATOR))  # as if an operator had closed it
    after = manager(store, reopen_within_s=300)  # the service restarted
    assert types(after.observe(v(100, True))) == ["reopened"]
    assert types(after.observe(v(120, True, asset="fan-2"))) == ["opened"]  # an operator's close stands
    assert len(store.list(asset="pump-1")) == 1 and len(store.list(asset="fan-2")) == 2


def test_an_anomaly_back_soon_after_resolving_reopens_its_alert_instead_of_a_new_one(store: SqliteAlertStore) -> None:
    counters = Counters()
    m = manager(store, counters, reopen_within_s=300)
    assert types(m.observe(v(0, True, score=2.0))) == ["opened"]
    assert types(m.observe(v(20, False))) == ["resolved"]  # quiet 10 s: resolved at 20 s
    (first,) = store.list()
    assert first.id is not None
    store.act(AlertAction(first.id, 1, "shift-a", "acknowledged"))
    events = m.observe(v(200, True, score=3.0))  # 180 s later: the same episode chattering back
    assert types(events) == ["reopened"]
    m.flush()
    (again,) = store.list()
    assert (again.id, again.state, again.resolved_at_ns, again.peak_score) == (first.id, "open", None, 3.0)
    assert again.acknowledged_by == "shift-a"  # acknowledged once for the episode
    assert [(h.actor, h.action) for h in store.history(first.id)] == [
        ("shift-a", "acknowledged"),
        ("plantwatch", "reopened"),
    ]
    assert counters.get("plantwatch_alerts_reopened_total") == 1
    assert types(m.observe(v(220, False))) == ["resolved"]
    assert types(m.observe(v(600, True))) == ["opened"]  # 380 s later: a new alert
    assert len(store.list()) == 2


def test_without_a_reopen_window_every_return_is_a_new_alert(store: SqliteAlertStore) -> None:
    m = manager(store)  # reopen_within_s defaults to 0 in the lifecycle; the service's default is 300 s
    m.observe(v(0, True))
    m.observe(v(20, False))
    assert types(m.observe(v(21, True))) == ["opened"]


def test_alerts_carry_the_assets_topic_tags_under_the_configured_ones(store: SqliteAlertStore) -> None:
    m = AlertManager(store, resolve_after_s=10, counters=Counters(), asset_tags={"pump-1": {"site": "basel"}})
    m.note_tags("pump-1", {"line": "L2", "site": "from-topic"})
    m.observe(v(0, True))
    m.observe_condition("pump-1", "stale_data", T0, (Contribution("a", 1.0, "silent", 300.0, 0.0, 0.0, "silent"),))
    assert {a.kind: a.tags for a in store.list()} == {
        "anomaly": (("line", "L2"), ("site", "basel")),
        "stale_data": (("line", "L2"), ("site", "basel")),
    }


def test_a_locked_store_makes_the_lifecycle_wait_and_no_alert_change_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    stop = threading.Event()
    waiting = WaitingStore(SqliteAlertStore(path), stop)
    alerts = manager(waiting)  # type: ignore[arg-type]
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the file: writes fail after busy_timeout (5 s)
    events: list[AlertEvent] = []
    opening = threading.Thread(target=lambda: events.extend(alerts.observe(v(0, True))), daemon=True)
    opening.start()
    wait_until(lambda: alerts.store_failing_s() > 0, 30, "the store to be reported failing")
    assert opening.is_alive() and not events  # waiting, not given up
    locker.execute("COMMIT")
    opening.join(30)
    assert types(events) == ["opened"] and alerts.store_failing_s() == 0.0
    (stored,) = SqliteAlertStore(path).open_alerts()
    assert stored.asset == "pump-1"
    locker.close()


def test_a_stop_while_the_store_is_unavailable_ends_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    stop = threading.Event()
    alerts = manager(WaitingStore(SqliteAlertStore(path), stop))  # type: ignore[arg-type]
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    failures: list[BaseException] = []

    def observe() -> None:
        try:
            alerts.observe(v(0, True))
        except AlertStoreStopped as exc:
            failures.append(exc)

    thread = threading.Thread(target=observe, daemon=True)
    thread.start()
    wait_until(lambda: alerts.store_failing_s() > 0, 30, "the store to be reported failing")
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and "could not store a new alert" in str(failures[0])
    locker.close()
