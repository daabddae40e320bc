"""How fast the alert API answers a poller with many stored alerts: latency per request kind.

    python bench/alerts_api.py [--alerts 100000] [--requests 200] [--store-url sqlite:///FILE | postgresql://...]

Fills an alert store (SQLite in a temporary folder by default) with N alerts over 100 assets and 30
days, every tenth one acknowledged and with a comment, then serves the real app (``api.app`` with
API keys on) with uvicorn on a loopback port and times sequential requests from one httpx client
(keep-alive), as a SCADA poller would make them:

* ``GET /alerts`` (the default page of 1,000) and ``?limit=100``;
* ``GET /alerts?updated_since=`` the newest change (a poller that is up to date: few rows);
* ``GET /alerts?asset=`` one asset's alerts, and ``?acknowledged=false&limit=100``;
* ``GET /alerts/{id}`` with its history;
* ``GET /alarm-kpis`` over the last day of the alerts.

Prints p50 / p99 / max in milliseconds per kind, and one JSON line. Not a timed test: figures vary by
machine; the goal (issue 12) is p99 < 50 ms for ``GET /alerts`` with 100,000 stored alerts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

from alerts.model import ACKNOWLEDGED, COMMENTED
from alerts.schema import alert_history, alerts
from alerts.store import PostgresAlertStore, SqliteAlertStore, open_store
from api.app import create_app
from api.hooks import ServiceHooks
from api.keys import KeyFile
from plantwatch.service.listen import bind_api
from plantwatch.service.wiring import freeze_startup_heap
from telemetry.counters import Counters

S = 10**9
DAY = 86_400 * S
START = 1_764_547_200 * S  # 2025-12-01
ASSETS = 100
SENSORS = json.dumps(
    [
        {
            "sensor": "vibration",
            "share": 0.7,
            "direction": "high",
            "value": 9.1,
            "expected_low": 1.0,
            "expected_high": 4.0,
        }
    ]
)


def fill(store: SqliteAlertStore | PostgresAlertStore, n: int) -> int:
    """N alerts over 30 days, bulk-inserted (the store's own insert is one transaction each); the newest start."""
    rng = np.random.default_rng(1)
    starts = np.sort(START + rng.integers(0, 30 * DAY, size=n))
    rows = []
    for i, start in enumerate(starts.tolist()):
        last = start + int(rng.integers(2, 600)) * S
        open_ = i >= n - 50
        rows.append(
            {
                "asset": f"asset-{i % ASSETS:03d}",
                "kind": "anomaly",
                "state": "open" if open_ else "resolved",
                "started_at_ns": start,
                "last_anomalous_at_ns": last,
                "resolved_at_ns": None if open_ else last + 60 * S,
                "last_activity_ns": last if open_ else last + 60 * S,
                "severity": "warning",
                "peak_score": 3.0,
                "peak_probability": 0.9999,
                "top_sensors": SENSORS,
                "unseen_operating_point": False,
                "acknowledged_at_ns": last + 120 * S if i % 10 == 0 else None,
                "acknowledged_by": "shift-a" if i % 10 == 0 else None,
                "updated_at_ns": last + 120 * S,
            }
        )
    engine = store._engine  # a bench's shortcut: one executemany instead of N transactions
    with engine.begin() as conn:
        for chunk in range(0, n, 10_000):
            conn.execute(alerts.insert(), rows[chunk : chunk + 10_000])
        ids = [i for (i,) in conn.execute(alerts.select().with_only_columns(alerts.c.id).order_by(alerts.c.id))]
        history = []
        for k, alert_id in enumerate(ids[::10]):
            at = START + k * S
            history += [
                {"alert_id": alert_id, "at_ns": at, "actor": "shift-a", "action": ACKNOWLEDGED, "comment": None},
                {"alert_id": alert_id, "at_ns": at + S, "actor": "shift-a", "action": COMMENTED, "comment": "seen"},
            ]
        for chunk in range(0, len(history), 10_000):
            conn.execute(alert_history.insert(), history[chunk : chunk + 10_000])
    return int(starts[-1])


def serve(store: Any, keys: KeyFile) -> tuple[str, uvicorn.Server, threading.Thread]:
    sockets = bind_api("127.0.0.1", 0)
    port = sockets[0].getsockname()[1]
    app = create_app(ServiceHooks(store=store, counters=Counters(), keys=keys))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return base, server, thread


def timed(client: httpx.Client, path: str, params: dict[str, str], requests: int) -> dict[str, float]:
    times = []
    rows = 0
    for _ in range(requests):
        started = time.perf_counter()
        resp = client.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        resp.raise_for_status()
        body = resp.json()
        rows = len(body) if isinstance(body, list) else 1
    ms = np.array(times)
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100_000, help="alerts stored (default 100,000)")
    parser.add_argument("--requests", type=int, default=200, help="requests timed per kind (default 200)")
    parser.add_argument("--store-url", help="alert store URL (default: SQLite in a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store_url or f"sqlite:///{Path(tmp) / 'alerts.db'}"
        store = open_store(url)
        started = time.perf_counter()
        newest = fill(store, args.alerts)  # type: ignore[arg-type]
        print(f"{args.alerts:,} alerts stored in {time.perf_counter() - started:.1f} s ({url.split(':')[0]})")
        keys = KeyFile(Path(tmp) / "keys.json")
        token = keys.create("bench", "read")
        freeze_startup_heap()  # as plantwatch.service.wiring.serve does before serving
        base, server, thread = serve(store, keys)
        one = store.list(limit=1)[0]
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((newest + 119 * S) / S))
        kinds: dict[str, tuple[str, dict[str, str]]] = {
            "GET /alerts (1,000)": ("/alerts", {}),
            "GET /alerts?limit=100": ("/alerts", {"limit": "100"}),
            "GET /alerts?updated_since=newest": ("/alerts", {"updated_since": since}),
            "GET /alerts?asset=one": ("/alerts", {"asset": "asset-007", "limit": "100"}),
            "GET /alerts?acknowledged=false&limit=100": ("/alerts", {"acknowledged": "false", "limit": "100"}),
            "GET /alerts/{id}": (f"/alerts/{one.id}", {}),
            "GET /alarm-kpis (last day)": (
                "/alarm-kpis",
                {"since": str((newest - DAY) / S), "until": str(newest / S + 1)},
            ),
        }
        results = {}
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:  # keep-alive, as a poller
            for name, (path, params) in kinds.items():
                timed(client, path, params, 5)  # warm
                results[name] = r = timed(client, path, params, args.requests)
                line = f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms"
                print(f"  {name:44s} {line}  ({r['rows']} rows)")
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
    summary = {"alerts": args.alerts, "store": url.split(":")[0]} | {
        name: {k: round(v, 2) for k, v in r.items()} for name, r in results.items()
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
