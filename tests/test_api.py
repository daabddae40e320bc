"""HTTP API over a real SQLite store, through FastAPI's TestClient."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.model import Alert, AlertAction
from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from api.instants import parse_instant
from detector.types import Contribution
from telemetry.counters import Counters

S = 1_000_000_000
T0 = 1_714_564_800 * S  # 2024-05-01T12:00:00Z
JSON = {"Content-Type": "application/json"}  # state-changing calls must say so (api.auth)


@pytest.fixture
def seeded(store: SqliteAlertStore) -> dict[str, Alert]:
    base = Alert(
        id=None,
        asset="pump-1",
        kind="anomaly",
        state="open",
        started_at_ns=T0,
        last_anomalous_at_ns=T0 + 30 * S + 123_456_789,
        resolved_at_ns=None,
        severity="critical",
        peak_score=7.5,
        peak_probability=0.9995,
        top_sensors=(Contribution("vibration", 0.8, "high", 9.5, 1.0, 4.0),),
    )
    old = store.insert(
        dataclasses.replace(
            base,
            asset="fan-2",
            state="resolved",
            started_at_ns=T0 - 3600 * S,
            last_anomalous_at_ns=T0 - 3500 * S,
            resolved_at_ns=T0 - 3400 * S,
            severity="warning",
            top_sensors=(),
        )
    )
    return {"open": store.insert(base), "old": old}


def client_for(store: SqliteAlertStore, counters: Counters | None = None, **kw: Any) -> TestClient:
    return TestClient(
        create_app(ServiceHooks(store=store, counters=counters or Counters(), **kw)), base_url="http://localhost"
    )


def test_one_alert_by_id(store: SqliteAlertStore, seeded: dict[str, Alert]) -> None:
    with client_for(store) as client:
        listed = {a["id"]: a for a in client.get("/alerts").json()}
        for alert in seeded.values():
            resp = client.get(f"/alerts/{alert.id}")
            assert resp.status_code == 200 and resp.json() == listed[alert.id] | {"history": []}
        missing = client.get("/alerts/999999")
        assert missing.status_code == 404 and missing.json()["detail"] == "no alert with id 999999"
        for bad in ("0", "-1", "abc", str(2**63)):
            assert client.get(f"/alerts/{bad}").status_code == 422, bad


def test_pollers_page_with_a_cursor_and_ask_for_what_changed(store: SqliteAlertStore, seeded: dict[str, Alert]) -> None:
    for i in range(5):
        store.insert(dataclasses.replace(seeded["open"], id=None, asset=f"fan-{i}", started_at_ns=T0 + i * S))
    with client_for(store) as client:
        everything = [a["id"] for a in client.get("/alerts").json()]
        seen, params = [], {"limit": "3"}
        while True:
            resp = client.get("/alerts", params=params)
            seen += [a["id"] for a in resp.json()]
            cursor = resp.headers.get("x-next-cursor")
            if cursor is None:
                break
            params = {"limit": "3", "cursor": cursor}
        assert seen == everything and len(seen) == 7
        assert client.get("/alerts", params={"cursor": "x1.2"}).status_code == 422
        newest = max(a["updated_at"] for a in client.get("/alerts").json())
        changed = client.get("/alerts", params={"updated_since": newest}).json()
        assert len(changed) >= 1 and all(a["updated_at"] >= newest for a in changed)
        future = client.get("/alerts", params={"updated_since": "2100-01-01T00:00:00Z"})
        assert future.status_code == 200 and future.json() == []
        wrong_order = client.get("/alerts", params={"updated_since": newest, "cursor": "s1.1"})
        assert wrong_order.status_code == 422


def test_a_poller_following_the_cursor_gets_each_change_once(store: SqliteAlertStore, seeded: dict[str, Alert]) -> None:
    with client_for(store) as client:
        first = client.get("/alerts", params={"updated_since": "2000-01-01T00:00:00Z", "limit": "1"})
        got = [a["id"] for a in first.json()]
        cursor = first.headers["x-next-cursor"]
        for _ in range(3):  # the rest, then nothing new: the cursor stays where it is
            answer = client.get("/alerts", params={"cursor": cursor, "limit": "1"})
            got += [a["id"] for a in answer.json()]
            cursor = answer.headers["x-next-cursor"]
        assert sorted(got) == sorted(a.id or 0 for a in seeded.values())  # each once, no repeat of the last
        assert client.get("/alerts", params={"cursor": cursor}).json() == []
        store.act(AlertAction(seeded["old"].id or 0, 1, "shift-a", "commented", "seen"))
        again = client.get("/alerts", params={"cursor": cursor})
        assert [a["id"] for a in again.json()] == [seeded["old"].id]
        quiet = client.get("/alerts", params={"updated_since": "2100-01-01T00:00:00Z"})
        assert quiet.json() == [] and quiet.headers["x-next-cursor"].startswith("u")
        # Nothing changed, and still a bad parameter is refused, not answered by the probe.
        up_to_date = again.headers["x-next-cursor"]
        assert client.get("/alerts", params={"cursor": up_to_date}).json() == []
        refused = client.get("/alerts", params={"cursor": up_to_date, "until": "soon"})
        assert refused.status_code == 422 and "until" in refused.json()["detail"]


def test_alert_json_shape(store: SqliteAlertStore, seeded: dict[str, Alert]) -> None:
    with client_for(store) as client:
        resp = client.get("/alerts", params={"state": "open"})
    assert resp.status_code == 200
    (served,) = resp.json()
    assert served.pop("updated_at").startswith(time.strftime("%Y-"))  # wall clock of the store's write
    assert [served] == [
        {
            "id": seeded["open"].id,
            "asset": "pump-1",
            "kind": "anomaly",
            "state": "open",
            "started_at": "2024-05-01T12:00:00Z",
            "last_anomalous_at": "2024-05-01T12:00:30.123456Z",
            "resolved_at": None,
            "severity": "critical",
            "peak_score": 7.5,
            "peak_probability": 0.9995,
            "top_sensors": [
                {
                    "sensor": "vibration",
                    "share": 0.8,
                    "direction": "high",
                    "value": 9.5,
                    "expected_low": 1.0,
                    "expected_high": 4.0,
                    "feature": "",
                    "within_expected": False,
                }
            ],
            "unseen_operating_point": False,
            "tags": {},
            "acknowledged_at": None,
            "acknowledged_by": None,
            "needs_acknowledgement": True,
            "shelved": False,
            "shelved_until": None,
            "shelved_reason": None,
        }
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["open", "old"]),  # newest first
        ({"asset": "fan-2"}, ["old"]),
        ({"state": "resolved"}, ["old"]),
        ({"kind": "maintenance"}, []),
        ({"limit": 1}, ["open"]),
        ({"since": "2024-05-01T12:00:00Z"}, ["open"]),
        ({"since": "2024-05-01T14:00:00+02:00"}, ["open"]),  # same instant, other zone
        ({"since": str(T0 // S - 3400)}, ["open", "old"]),  # epoch seconds, resolved_at boundary
        ({"since": f"{T0 // S - 3399.5}"}, ["open"]),  # fractional epoch seconds
        ({"since": "2024-05-01T12:00:31Z"}, []),
    ],
)
def test_filters(
    store: SqliteAlertStore, seeded: dict[str, Alert], params: dict[str, Any], expected: list[str]
) -> None:
    with client_for(store) as client:
        resp = client.get("/alerts", params=params)
    assert resp.status_code == 200, resp.text
    assert [a["id"] for a in resp.json()] == [seeded[name].id for name in expected]


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("yesterday", "ISO-8601"),
        ("2024-05-01T12:00:00", "zone"),
        ("nan", "finite"),
        ("1e30", "range"),
        ("1e999999999", "range"),
        ("9999-01-01T00:00:00Z", "range"),
    ],
)
def test_bad_since_is_422_with_clear_message(store: SqliteAlertStore, since: str, message: str) -> None:
    with client_for(store) as client:
        resp = client.get("/alerts", params={"since": since})
    assert resp.status_code == 422
    assert message in resp.json()["detail"] and "since" in resp.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"state": "closed"},
        {"limit": 0},
        {"limit": 10_001},
        {"asset": "pump\x00"},  # PostgreSQL text cannot hold NUL: a 500 from the store before
        {"kind": "\x00"},
        {"asset": "p" * 129},  # longer than any name the decoder accepts
    ],
)
def test_invalid_state_and_limit_are_422(store: SqliteAlertStore, params: dict[str, Any]) -> None:
    with client_for(store) as client:
        assert client.get("/alerts", params=params).status_code == 422


def test_parse_since_keeps_nanoseconds() -> None:
    assert parse_instant("1714564800.123456789", "since") == T0 + 123_456_789
    assert parse_instant("2024-05-01T12:00:00.5Z", "since") == T0 + 500_000_000


def test_metrics_prometheus_text(store: SqliteAlertStore) -> None:
    counters = Counters()
    counters.inc("plantwatch_alerts_opened_total", 3)
    with client_for(store, counters) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE plantwatch_alerts_opened_total counter" in resp.text
    assert "\nplantwatch_alerts_opened_total 3.0\n" in resp.text


def test_healthz_ok_merges_health_details(store: SqliteAlertStore) -> None:
    with client_for(store, health=lambda: {"status": "ok", "lag_s": 0.2}) as client:
        resp = client.get("/healthz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ok", "lag_s": 0.2})


def test_healthz_without_callback_is_ok(store: SqliteAlertStore) -> None:
    with client_for(store) as client:
        assert client.get("/healthz").json() == {"status": "ok"}


def test_healthz_503_when_degraded(store: SqliteAlertStore) -> None:
    with client_for(store, health=lambda: {"status": "degraded", "mqtt": "disconnected"}) as client:
        resp = client.get("/healthz")
    assert (resp.status_code, resp.json()["mqtt"]) == (503, "disconnected")


def test_healthz_503_when_probe_raises(store: SqliteAlertStore) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("influx down")

    with client_for(store, health=broken) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 503 and "influx down" in resp.json()["error"]


def test_lifespan_hooks_run_around_serving(store: SqliteAlertStore) -> None:
    calls: list[str] = []
    client = client_for(store, on_startup=lambda: calls.append("start"), on_shutdown=lambda: calls.append("stop"))
    assert calls == []
    with client:
        assert calls == ["start"]
        client.get("/healthz")
        assert calls == ["start"]
    assert calls == ["start", "stop"]


def test_relearn_asks_the_pipeline_and_answers_202(store: SqliteAlertStore) -> None:
    asked: list[tuple[str, bool]] = []

    def relearn(asset: str, maintenance: bool) -> bool:
        asked.append((asset, maintenance))
        return asset == "pump 7"

    with TestClient(
        create_app(ServiceHooks(store=store, counters=Counters(), relearn=relearn)), base_url="http://localhost"
    ) as client:
        resp = client.post("/assets/pump%207/relearn", headers=JSON)
        assert resp.status_code == 202
        assert resp.json() == {"asset": "pump 7", "status": "relearning", "maintenance": False}
        overhauled = client.post("/assets/pump%207/relearn", params={"maintenance": "true"}, headers=JSON)
        assert overhauled.status_code == 202 and overhauled.json()["maintenance"] is True
        unknown = client.post("/assets/fan-9/relearn", headers=JSON)
        assert unknown.status_code == 404 and "fan-9" in unknown.json()["detail"]
        perhaps = client.post("/assets/pump%207/relearn", params={"maintenance": "perhaps"}, headers=JSON)
        assert perhaps.status_code == 422
    assert asked == [("pump 7", False), ("pump 7", True), ("fan-9", False)]


def test_relearn_without_a_pipeline_knows_no_asset(store: SqliteAlertStore) -> None:
    with client_for(store) as client:
        assert client.post("/assets/pump-7/relearn", headers=JSON).status_code == 404


def test_feedback_hands_the_verdict_and_period_to_the_pipeline(store: SqliteAlertStore) -> None:
    asked: list[tuple[str, str, int, int]] = []

    def feedback(asset: str, verdict: str, start_ns: int, end_ns: int) -> int | None:
        asked.append((asset, verdict, start_ns, end_ns))
        if asset == "cold":
            raise ValueError("asset 'cold' has no learned baseline: there is no alert to learn from")
        if asset == "busy":
            raise TimeoutError
        return 42 if asset == "pump 7" else None

    body = {"verdict": "false_alarm", "start": "2024-05-01T12:00:00Z", "end": "1714564830"}
    with TestClient(
        create_app(ServiceHooks(store=store, counters=Counters(), feedback=feedback)), base_url="http://localhost"
    ) as client:
        resp = client.post("/assets/pump%207/feedback", json=body)
        assert resp.status_code == 200
        assert resp.json() == {"asset": "pump 7", "verdict": "false_alarm", "rows": 42}
        assert asked[-1] == ("pump 7", "false_alarm", T0, T0 + 30 * S)
        fault = client.post("/assets/pump%207/feedback", json=body | {"verdict": "true_fault"})
        assert fault.status_code == 200 and fault.json()["verdict"] == "true_fault"
        unknown = client.post("/assets/fan-9/feedback", json=body)
        assert unknown.status_code == 404 and "fan-9" in unknown.json()["detail"]
        cold = client.post("/assets/cold/feedback", json=body)
        assert cold.status_code == 409 and "no learned baseline" in cold.json()["detail"]
        assert client.post("/assets/busy/feedback", json=body).status_code == 503
        calls = len(asked)
        # refused before the pipeline is asked
        assert client.post("/assets/pump%207/feedback", json=body | {"verdict": "maybe"}).status_code == 422
        assert client.post("/assets/pump%207/feedback", json=body | {"extra": 1}).status_code == 422
        naive = client.post("/assets/pump%207/feedback", json=body | {"start": "2024-05-01T12:00:00"})
        assert naive.status_code == 422 and naive.json()["detail"].startswith("invalid 'start' value")
        backwards = client.post("/assets/pump%207/feedback", json=body | {"end": "1714564700"})
        assert backwards.status_code == 422 and backwards.json()["detail"] == "end: before start"
        assert len(asked) == calls
        numbers = client.post("/assets/pump%207/feedback", json=body | {"start": 1714564800, "end": 1714564830.5})
        assert numbers.status_code == 200 and asked[-1][2:] == (T0, T0 + 30 * S + 500_000_000)


def test_feedback_without_a_pipeline_knows_no_asset(store: SqliteAlertStore) -> None:
    body = {"verdict": "true_fault", "start": "0", "end": "1"}
    with client_for(store) as client:
        assert client.post("/assets/pump-7/feedback", json=body).status_code == 404


def test_alerts_filter_by_tag_severity_kind_and_start(store: SqliteAlertStore, seeded: dict[str, Alert]) -> None:
    tagged = store.insert(
        dataclasses.replace(seeded["open"], id=None, kind="sensor_fault", tags=(("line", "L2"), ("site", "basel")))
    )
    with client_for(store) as client:

        def ids(**params: str) -> list[int]:
            answer = client.get("/alerts", params=params)
            assert answer.status_code == 200, answer.text
            return [a["id"] for a in answer.json()]

        assert ids(tag="line:L2") == [tagged.id] and ids(tag="line:L3") == [] and ids(tag="site:basel") == [tagged.id]
        assert client.get(f"/alerts/{tagged.id}").json()["tags"] == {"line": "L2", "site": "basel"}
        assert ids(severity="warning") == [seeded["old"].id]
        assert ids(kind="sensor_fault") == [tagged.id]
        assert set(ids(severity="critical")) == {tagged.id, seeded["open"].id}
        assert ids(until=str((T0 - 3000 * S) / S)) == [seeded["old"].id]  # started at or before
        for bad in ({"kind": "fault"}, {"severity": "high"}, {"tag": "line"}, {"tag": ":L2"}, {"until": "soon"}):
            assert client.get("/alerts", params=bad).status_code == 422, bad
