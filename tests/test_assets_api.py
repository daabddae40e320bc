"""GET /assets and GET /assets/{asset}: a real monitor's state, baseline and latest verdict, served."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from detector.types import Verdict
from plantwatch.service.asset_view import asset_view
from telemetry.counters import Counters

S = 1_000_000_000
SENSORS = ("flow", "pressure", "temp")


def _rows(n: int, start: int, rng: np.random.Generator) -> list[tuple[int, dict[str, float]]]:
    X = rng.normal(size=(n, len(SENSORS))) + np.array([30.0, 2.0, 60.0])
    return [(int((start + i) * S), dict(zip(SENSORS, X[i].tolist(), strict=True))) for i in range(n)]


def _serve(monitor: AssetMonitor, latest: list[Verdict], store: SqliteAlertStore) -> TestClient:
    hooks = ServiceHooks(
        store=store,
        counters=Counters(),
        assets=lambda only: (
            [asset_view(monitor, latest[-1] if latest else None)] if only in (None, monitor.asset) else []
        ),
    )
    return TestClient(create_app(hooks), base_url="http://localhost")


def test_an_asset_learning_then_in_alarm(store: SqliteAlertStore) -> None:
    rng = np.random.default_rng(3)
    monitor = AssetMonitor("pump-7", MonitorConfig(baseline_rows=300, max_staleness_ns=5 * S))
    latest = monitor.feed_many(_rows(100, 0, rng))
    with _serve(monitor, latest, store) as client:
        learning = client.get("/assets/pump-7").json()
        assert learning["state"] == "learning" and not learning["learned"]
        assert learning["baseline_rows_seen"] == 100 and learning["baseline_rows"] == 300
        assert learning["probability"] is None and learning["alarm_enter"] is None and learning["window_s"] is None
        latest += monitor.feed_many(_rows(400, 100, rng))
        normal = client.get("/assets/pump-7").json()
        assert normal["learned"] and normal["baseline_rows_seen"] == 300 and normal["window_s"] > 0
        assert 0.995 <= normal["alarm_enter"] < 1 and normal["sensors"] == list(SENSORS)
        assert normal["last_row_at"] == "1970-01-01T00:08:19Z"  # the 500th row, at 499 s
        faulty = _rows(60, 500, rng)
        for _, values in faulty:
            values["pressure"] += 40.0  # a pressure far above anything the baseline saw
        latest += monitor.feed_many(faulty)
        alarm = client.get("/assets/pump-7").json()
        assert alarm["state"] == "alarm" and alarm["anomaly"] and alarm["probability"] >= alarm["alarm_enter"]
        assert alarm["top_sensors"][0]["sensor"] == "pressure" and alarm["top_sensors"][0]["direction"] == "high"
        assert client.get("/assets").json() == [alarm]
        missing = client.get("/assets/fan-9")
        assert missing.status_code == 404 and "fan-9" in missing.json()["detail"]
        assert client.get("/assets/p%01ump").status_code == 422
        monitor.reset()  # relearn: the alarm verdict belonged to the forgotten model
        relearning = client.get("/assets/pump-7").json()
        assert relearning["state"] == "learning" and not relearning["anomaly"]
        assert relearning["probability"] is None and relearning["top_sensors"] == []
