"""What a shift does with an alert through the API: acknowledge, shelve, unshelve, comment; and that the
lifecycle's own writes of an open alert never undo them."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alerts.lifecycle import AlertManager
from alerts.model import Alert
from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from api.keys import KeyFile
from detector.types import Contribution, Verdict
from telemetry.counters import Counters

S = 1_000_000_000
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    file = KeyFile(tmp_path / "keys.json")
    return {"file": str(file.path), "read": file.create("scada", "read"), "operate": file.create("shift-a", "operate")}


def client(store: SqliteAlertStore, keys: dict[str, str]) -> TestClient:
    hooks = ServiceHooks(store=store, counters=Counters(), keys=KeyFile(keys["file"]))
    return TestClient(create_app(hooks), base_url="http://localhost")


def auth(token: str) -> dict[str, str]:
    return JSON | {"Authorization": f"Bearer {token}"}


def verdict(ts_s: int, anomaly: bool) -> Verdict:
    top = (Contribution("vibration", 1.0, "high", 9.0, 1.0, 4.0, "level"),)
    return Verdict(
        "pump-7", ts_s * S, 5.0 if anomaly else 0.1, 0.9999 if anomaly else 0.2, anomaly, top if anomaly else ()
    )


def test_a_shift_acknowledges_comments_shelves_and_unshelves(store: SqliteAlertStore, keys: dict[str, str]) -> None:
    manager = AlertManager(store, resolve_after_s=60, counters=Counters())
    for t in range(100, 110):
        manager.observe(verdict(t, True))
    (alert,) = store.list()
    with client(store, keys) as c:
        path = f"/alerts/{alert.id}"
        assert c.post(path + "/ack", json={}, headers=auth(keys["read"])).status_code == 403
        acked = c.post(path + "/ack", json={"comment": "on my way"}, headers=auth(keys["operate"]))
        assert acked.status_code == 200
        body = acked.json()
        assert body["acknowledged_by"] == "shift-a" and not body["needs_acknowledgement"] and body["state"] == "open"
        assert [(h["actor"], h["action"], h["comment"]) for h in body["history"]] == [
            ("shift-a", "acknowledged", "on my way")
        ]
        again = c.post(path + "/ack", json={}, headers=auth(keys["operate"]))
        assert again.status_code == 409 and "by shift-a" in again.json()["detail"]
        # The anomaly goes on: the lifecycle writes the open alert again (its copy knows no acknowledgement).
        for t in range(110, 130):
            manager.observe(verdict(t, True))
        manager.flush()
        assert c.get(path, headers=auth(keys["read"])).json()["acknowledged_by"] == "shift-a"
        before = time.time()
        shelved = c.post(
            path + "/shelve", json={"hours": 2, "reason": "pump out for service"}, headers=auth(keys["operate"])
        )
        assert shelved.status_code == 200 and shelved.json()["shelved"] is True
        assert shelved.json()["shelved_reason"] == "pump out for service"
        until = shelved.json()["shelved_until"]
        assert until > time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before + 7190))
        assert c.get("/alerts", params={"acknowledged": "false"}, headers=auth(keys["read"])).json() == []
        noted = c.post(path + "/comment", json={"comment": "fitter on site"}, headers=auth(keys["operate"]))
        assert noted.json()["history"][-1]["action"] == "commented"
        unshelved = c.post(path + "/unshelve", json={}, headers=auth(keys["operate"]))
        assert unshelved.status_code == 200 and unshelved.json()["shelved"] is False
        assert c.post(path + "/unshelve", json={}, headers=auth(keys["operate"])).status_code == 409
        history = c.get(path, headers=auth(keys["read"])).json()["history"]
        assert [h["action"] for h in history] == ["acknowledged", "shelved", "commented", "unshelved"]
        assert history[1]["shelved_until"] == until


def test_an_alert_that_resolved_by_itself_still_needs_acknowledgement(
    store: SqliteAlertStore, keys: dict[str, str]
) -> None:
    manager = AlertManager(store, resolve_after_s=60, counters=Counters())
    for t in range(100, 105):
        manager.observe(verdict(t, True))
    for t in range(105, 200):
        manager.observe(verdict(t, False))
    (alert,) = store.list()
    assert alert.state == "resolved"
    with client(store, keys) as c:
        unacked = c.get("/alerts", params={"acknowledged": "false"}, headers=auth(keys["read"])).json()
        assert [a["id"] for a in unacked] == [alert.id] and unacked[0]["needs_acknowledgement"]
        c.post(f"/alerts/{alert.id}/ack", json={}, headers=auth(keys["operate"]))
        assert c.get("/alerts", params={"acknowledged": "false"}, headers=auth(keys["read"])).json() == []


def test_bad_actions_are_refused_and_change_nothing(store: SqliteAlertStore, keys: dict[str, str]) -> None:
    alert = store.insert(dataclasses.replace(Alert.opened("pump-7", "anomaly", 100 * S, "warning", 2.0, 0.99, ())))
    op = auth(keys["operate"])
    with client(store, keys) as c:
        path = f"/alerts/{alert.id}"
        assert c.post("/alerts/999/ack", json={}, headers=op).status_code == 404
        assert c.post(path + "/shelve", json={"reason": "x"}, headers=op).status_code == 422  # neither hours nor until
        assert (
            c.post(
                path + "/shelve", json={"reason": "x", "hours": 1, "until": "2099-01-01T00:00:00Z"}, headers=op
            ).status_code
            == 422
        )
        assert c.post(path + "/shelve", json={"reason": "x", "hours": 721}, headers=op).status_code == 422
        assert (
            c.post(path + "/shelve", json={"reason": "x", "until": "2020-01-01T00:00:00Z"}, headers=op).status_code
            == 422
        )
        assert c.post(path + "/shelve", json={"hours": 1}, headers=op).status_code == 422  # no reason
        assert c.post(path + "/comment", json={"comment": ""}, headers=op).status_code == 422
        assert c.post(path + "/comment", json={"comment": "x" * 2001}, headers=op).status_code == 422
        assert c.post(path + "/ack", json={"by": "someone else"}, headers=op).status_code == 422  # no spoofing
        text = {"Authorization": f"Bearer {keys['operate']}", "Content-Type": "text/plain"}
        assert c.post(path + "/ack", content=b"{}", headers=text).status_code == 415
        assert c.post(path + "/ack", json={}).status_code == 401
        assert c.get(path, headers=auth(keys["read"])).json()["history"] == []


class FakeDetector:
    """The feedback hook's side: what reached it, and what it answers."""

    def __init__(self, answer: int | None | Exception = 42) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, int, int]] = []

    def __call__(self, asset: str, verdict: str, start_ns: int, end_ns: int) -> int | None:
        self.calls.append((asset, verdict, start_ns, end_ns))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _client_with(store: SqliteAlertStore, keys: dict[str, str], detector: FakeDetector) -> TestClient:
    hooks = ServiceHooks(store=store, counters=Counters(), keys=KeyFile(keys["file"]), feedback=detector)
    return TestClient(create_app(hooks), base_url="http://localhost")


def test_a_verdict_on_an_alert_reaches_the_detector_over_its_rows(
    store: SqliteAlertStore, keys: dict[str, str]
) -> None:
    alert = store.insert(dataclasses.replace(Alert.opened("pump-7", "anomaly", 100 * S, "warning", 2.0, 0.99, ())))
    alert = dataclasses.replace(alert, last_anomalous_at_ns=160 * S)
    store.update(alert)
    detector = FakeDetector(answer=57)
    op = auth(keys["operate"])
    with _client_with(store, keys, detector) as c:
        resp = c.post(
            f"/alerts/{alert.id}/feedback", json={"verdict": "false_alarm", "comment": "cleaning"}, headers=op
        )
        assert resp.status_code == 200
        body = resp.json()
        assert body["rows"] == 57 and body["detector"] == "57 alert rows learned as normal"
        assert body["history"][-1]["action"] == "marked_false_alarm" and body["history"][-1]["comment"] == "cleaning"
        assert detector.calls == [("pump-7", "false_alarm", 100 * S, 160 * S)]
        known = c.post(f"/alerts/{alert.id}/feedback", json={"verdict": "known_cause"}, headers=op).json()
        assert known["rows"] == 0 and "recorded only" in known["detector"] and len(detector.calls) == 1
        kpis = c.get("/alarm-kpis", params={"since": "0", "until": "1000"}, headers=auth(keys["read"])).json()
        assert kpis["marked_false_alarm"] == 1 and kpis["false_alarm_share"] == 1.0
        assert c.post(f"/alerts/{alert.id}/feedback", json={"verdict": "maybe"}, headers=op).status_code == 422
        assert (
            c.post(
                f"/alerts/{alert.id}/feedback", json={"verdict": "true_fault"}, headers=auth(keys["read"])
            ).status_code
            == 403
        )


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (ValueError("asset 'pump-7' has no learned baseline"), "not applied: asset 'pump-7' has no learned baseline"),
        (None, "not applied: the detector knows no asset 'pump-7' now"),
    ],
)
def test_a_verdict_the_detector_cannot_take_is_still_recorded(
    store: SqliteAlertStore, keys: dict[str, str], answer: Exception | None, said: str
) -> None:
    alert = store.insert(Alert.opened("pump-7", "anomaly", 100 * S, "warning", 2.0, 0.99, ()))
    with _client_with(store, keys, FakeDetector(answer)) as c:
        resp = c.post(f"/alerts/{alert.id}/feedback", json={"verdict": "true_fault"}, headers=auth(keys["operate"]))
        assert resp.status_code == 200 and resp.json()["detector"] == said and resp.json()["rows"] == 0
        assert resp.json()["history"][-1]["action"] == "marked_true_fault"


def test_a_detector_that_does_not_answer_in_time_records_nothing(store: SqliteAlertStore, keys: dict[str, str]) -> None:
    alert = store.insert(Alert.opened("pump-7", "anomaly", 100 * S, "warning", 2.0, 0.99, ()))
    with _client_with(store, keys, FakeDetector(TimeoutError())) as c:
        resp = c.post(f"/alerts/{alert.id}/feedback", json={"verdict": "false_alarm"}, headers=auth(keys["operate"]))
        assert resp.status_code == 503 and "try again" in resp.json()["detail"]
    assert store.history(alert.id or 0) == []


def test_acknowledging_or_unshelving_needs_no_body(store: SqliteAlertStore, keys: dict[str, str]) -> None:
    alert = store.insert(Alert.opened("pump-7", "anomaly", 100 * S, "warning", 2.0, 0.99, ()))
    op = auth(keys["operate"])
    with client(store, keys) as c:
        path = f"/alerts/{alert.id}"
        assert c.post(path + "/ack", headers=op).status_code == 200  # Content-Type JSON, empty body
        c.post(path + "/shelve", json={"hours": 1, "reason": "service"}, headers=op)
        assert c.post(path + "/unshelve", headers=op).status_code == 200
        history = c.get(path, headers=auth(keys["read"])).json()["history"]
        assert [(h["action"], h["comment"]) for h in history] == [
            ("acknowledged", None),
            ("shelved", "service"),
            ("unshelved", None),
        ]


def test_a_shift_resolves_an_open_alert_by_hand_and_the_next_anomaly_opens_a_new_one(
    store: SqliteAlertStore, keys: dict[str, str]
) -> None:
    manager = AlertManager(store, resolve_after_s=60, counters=Counters())
    for t in range(100, 110):
        manager.observe(verdict(t, True))
    (alert,) = store.list()
    hooks = ServiceHooks(store=store, counters=Counters(), keys=KeyFile(keys["file"]), resolve=manager.close)
    with TestClient(create_app(hooks), base_url="http://localhost") as c:
        path = f"/alerts/{alert.id}/resolve"
        assert c.post(path, json={}, headers=auth(keys["read"])).status_code == 403
        done = c.post(path, json={"comment": "impeller replaced"}, headers=auth(keys["operate"]))
        assert done.status_code == 200
        body = done.json()
        assert (body["state"], body["needs_acknowledgement"]) == ("resolved", True)  # resolving is not acknowledging
        assert body["resolved_at"] == body["last_anomalous_at"]
        assert [(h["actor"], h["action"], h["comment"]) for h in body["history"]] == [
            ("shift-a", "resolved", "impeller replaced")
        ]
        assert c.post(path, headers=auth(keys["operate"])).status_code == 409
        assert manager.open_alerts() == []
        [opened] = manager.observe(verdict(120, True))
        assert opened.kind == "opened" and opened.alert.id != alert.id
        # An open alert no running lifecycle tracks (an idle API in these tests) is resolved in the store.
        orphan = store.insert(Alert.opened("fan-1", "anomaly", 50 * S, "warning", 2.0, 0.99, ()))
        assert c.post(f"/alerts/{orphan.id}/resolve", headers=auth(keys["operate"])).json()["state"] == "resolved"
        assert c.post("/alerts/99999/resolve", headers=auth(keys["operate"])).status_code == 404
