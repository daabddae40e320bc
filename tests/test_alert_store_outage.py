"""A PostgreSQL outage: the alert lifecycle waits for the server and loses no alert change.

The server is the test's own (the shared one cannot be stopped), restarted on the same data and port.
"""

from __future__ import annotations

import threading
from pathlib import Path

from servers import free_port, postgres_data, run_postgres
from waiting import wait_until

from alerts.lifecycle import AlertEvent, AlertManager
from alerts.model import STATE_RESOLVED
from alerts.retrying import WaitingStore
from alerts.store import PostgresAlertStore
from detector.types import Verdict
from telemetry.counters import Counters

T0 = 1_700_000_000 * 10**9


def _verdict(t_s: int, anomaly: bool) -> Verdict:
    return Verdict("pump-1", T0 + t_s * 10**9, 1.0, 0.99 if anomaly else 0.1, anomaly)


def test_a_postgres_outage_makes_the_lifecycle_wait_and_no_alert_change_is_lost(tmp_path: Path) -> None:
    data, port = postgres_data(tmp_path), free_port()
    stop = threading.Event()
    counters = Counters()
    with run_postgres(data, port) as server:
        store = PostgresAlertStore(server.url)
        alerts = AlertManager(WaitingStore(store, stop), resolve_after_s=10, counters=counters)
        assert [e.kind for e in alerts.observe(_verdict(0, True))] == ["opened"]
    # The server is down: the quiet row that resolves the alert cannot be written.
    events: list[AlertEvent] = []
    resolving = threading.Thread(target=lambda: events.extend(alerts.observe(_verdict(20, False))), daemon=True)
    resolving.start()
    try:
        wait_until(lambda: alerts.store_failing_s() > 0, 30, "the store to be reported failing")
        assert resolving.is_alive() and not events
        with run_postgres(data, port):
            resolving.join(60)
            assert [e.kind for e in events] == ["resolved"] and alerts.store_failing_s() == 0.0
            (stored,) = store.list()
            assert stored.state == STATE_RESOLVED and stored.resolved_at_ns == T0 + 20 * 10**9
    finally:
        stop.set()
        resolving.join(10)
        store.close()
