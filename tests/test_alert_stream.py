"""GET /alerts/stream on a real server: changes pushed as Server-Sent Events, resumed with Last-Event-ID."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from alerts.model import Alert, AlertAction
from alerts.store import SqliteAlertStore
from api.app import create_app
from api.hooks import ServiceHooks
from api.routes import alert_stream
from plantwatch.service.listen import bind_api
from telemetry.counters import Counters

S = 1_000_000_000


@pytest.fixture
def base(store: SqliteAlertStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(alert_stream, "POLL_S", 0.05)
    monkeypatch.setattr(alert_stream, "HEARTBEAT_S", 0.2)
    sockets = bind_api("127.0.0.1", 0)
    port = sockets[0].getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(ServiceHooks(store=store, counters=Counters())), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _events(lines: Iterator[str], count: int, timeout_s: float = 10) -> tuple[list[dict[str, Any]], int]:
    """The next ``count`` alert events (their ids and data) and how many keep-alive comments came first."""
    events: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    beats = 0
    deadline = time.monotonic() + timeout_s
    for line in lines:
        assert time.monotonic() < deadline, "no event in time"
        if line == ": keep-alive":
            beats += 1
        elif line.startswith(("id: ", "event: ", "data: ")):
            field, _, value = line.partition(": ")
            current[field] = value
        elif line == "" and current:
            assert current["event"] == "alert"
            events.append({"id": current["id"], "alert": json.loads(current["data"])})
            current = {}
            if len(events) == count:
                break
    return events, beats


def test_changes_are_pushed_and_a_reconnect_resumes_after_the_last_one(store: SqliteAlertStore, base: str) -> None:
    before = store.insert(Alert.opened("old-pump", "anomaly", 50 * S, "warning", 2.0, 0.99, ()))
    with httpx.stream("GET", base + "/alerts/stream", timeout=10) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        assert next(lines) == ": plantwatch alert stream"
        opened = store.insert(Alert.opened("pump-7", "anomaly", 100 * S, "critical", 5.0, 0.9999, ()))
        (first,), _ = _events(lines, 1)
        assert first["alert"]["id"] == opened.id and first["alert"]["state"] == "open"
        assert opened.id is not None
        store.act(AlertAction(opened.id, time.time_ns(), "shift-a", "acknowledged"))
        (second,), _ = _events(lines, 1)
        assert second["alert"]["acknowledged_by"] == "shift-a"
    assert before.id not in (first["alert"]["id"], second["alert"]["id"])  # only what changed
    with httpx.stream("GET", base + "/alerts/stream", headers={"Last-Event-ID": str(first["id"])}, timeout=10) as resp:
        (resumed,), _ = _events(resp.iter_lines(), 1)
        assert resumed["id"] == second["id"]  # the change after the last one seen, and none twice


def test_a_quiet_stream_sends_keep_alive_comments(base: str) -> None:
    with httpx.stream("GET", base + "/alerts/stream", timeout=10) as resp:
        lines = resp.iter_lines()
        seen = [next(lines) for _ in range(3)]
    assert seen[0] == ": plantwatch alert stream" and ": keep-alive" in seen[1:]


def test_a_bad_resume_point_is_refused(base: str) -> None:
    assert httpx.get(base + "/alerts/stream", headers={"Last-Event-ID": "s1.2"}, timeout=5).status_code == 422
    assert httpx.get(base + "/alerts/stream", params={"updated_since": "soon"}, timeout=5).status_code == 422
    assert httpx.get(base + "/alerts/12345", timeout=5).status_code == 404  # the stream shadows no alert id
