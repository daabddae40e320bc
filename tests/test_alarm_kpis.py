"""Alarm-management figures (alerts.kpis, GET /alarm-kpis) on alerts whose figures are known by hand."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from alerts.kpis import FLOOD_WINDOW_NS, HOUR, MINUTE, S, alarm_kpis
from alerts.model import Alert
from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from telemetry.counters import Counters

T0 = 1_767_571_200 * S  # 2026-01-05T00:00:00Z


def alert(asset: str, start_s: float, anomalous_s: float = 30, *, open_: bool = False, kind: str = "anomaly") -> Alert:
    started = T0 + int(start_s * S)
    a = Alert.opened(asset, kind, started, "warning", 2.0, 0.999, ())
    a = dataclasses.replace(a, last_anomalous_at_ns=started + int(anomalous_s * S))
    if open_:
        return a
    return dataclasses.replace(a, state="resolved", resolved_at_ns=a.last_anomalous_at_ns + 60 * S)


def test_rates_peak_and_bad_actors() -> None:
    alerts = [alert("pump-1", 3600 * h) for h in range(6)] + [alert("fan-2", 100), alert("fan-2", 7200)]
    k = alarm_kpis(alerts, T0, T0 + 6 * HOUR)
    assert k.alerts == 8 and k.assets == 2  # pump-1 at 0..5 h, fan-2 twice; all within [since, until]
    assert k.per_hour == pytest.approx(8 / 6)
    assert k.per_asset_per_hour == pytest.approx({"fan-2": 2 / 6, "pump-1": 1.0})
    assert (k.peak_10min, k.peak_10min_start_ns) == (2, T0)  # pump-1 at 0 s and fan-2 at 100 s
    assert k.bad_actors == [("pump-1", 6), ("fan-2", 2)] and k.top10_share == 1.0
    assert k.flood_periods == 0 and k.periods == 36 and k.chattering == [] and k.standing == []


def test_floods_chattering_fleeting_and_standing() -> None:
    flood = [alert(f"a{i}", 600 + 20 * i, anomalous_s=5 if i < 3 else 30) for i in range(12)]  # 12 in 4 minutes
    chatter = [alert("valve-3", 7200 + 15 * i) for i in range(4)]  # 4 within 45 s
    standing = alert("old-pump", -30 * HOUR / S, open_=True)  # opened before the period, still open
    recent_open = alert("new-pump", 20 * HOUR / S, open_=True)
    k = alarm_kpis([*flood, *chatter, standing, recent_open], T0, T0 + 24 * HOUR)
    assert k.alerts == 12 + 4 + 1  # the standing one started before the period
    assert k.flood_periods == 1 and k.flood_share == pytest.approx(1 / (24 * HOUR // FLOOD_WINDOW_NS))
    assert k.peak_10min == 12
    assert k.chattering == [("valve-3", "anomaly", 4)]
    assert k.fleeting == 3
    assert [a.asset for a in k.standing] == ["old-pump"]


def test_a_period_must_have_a_length() -> None:
    with pytest.raises(ValueError, match="until must be after since"):
        alarm_kpis([], T0, T0)
    empty = alarm_kpis([], T0, T0 + MINUTE)
    assert empty.alerts == 0 and empty.top10_share == 0.0 and empty.peak_10min_start_ns is None


def test_the_endpoint_reads_the_store(store: SqliteAlertStore) -> None:
    for a in [alert("pump-1", 60 * m) for m in range(12)] + [alert("old-pump", -30 * HOUR / S, open_=True)]:
        store.insert(a)
    app = create_app(ServiceHooks(store=store, counters=Counters()))
    with TestClient(app, base_url="http://localhost") as client:
        resp = client.get("/alarm-kpis", params={"since": "2026-01-05T00:00:00Z", "until": "2026-01-05T12:00:00Z"})
        assert resp.status_code == 200
        body = resp.json()
        assert body["alerts"] == 12 and body["per_hour"] == pytest.approx(1.0) and body["peak_10min"] == 10
        assert body["bad_actors"] == [{"asset": "pump-1", "alerts": 12, "share": 1.0}]
        assert [s["asset"] for s in body["standing"]] == ["old-pump"] and body["standing"][0]["open_hours"] == 42
        assert body["complete"] is True and "peak_10min" in body["targets"]
        assert body["since"] == "2026-01-05T00:00:00Z"
        backwards = client.get("/alarm-kpis", params={"since": "2026-01-05T12:00:00Z", "until": "2026-01-05T00:00:00Z"})
        assert backwards.status_code == 422
        assert client.get("/alarm-kpis", params={"since": "yesterday"}).status_code == 422
        assert client.get("/alarm-kpis").status_code == 200  # the last 24 hours by the server's clock
