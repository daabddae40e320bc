"""Alert changes going out: retained per-asset state over a real Mosquitto, and signed webhooks to a
real HTTP receiver, each fed in the store's order of changes from where it left off."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from servers import MosquittoServer
from waiting import wait_until

from alerts.model import Alert, AlertAction
from alerts.store import SqliteAlertStore
from ingest.mqtt_source import MqttOptions
from ingest.topics import TopicTemplate
from plantwatch.outputs.mqtt import MqttAlertPublisher
from plantwatch.outputs.webhook import Webhook, signature
from plantwatch.service.notifier import AlertNotifier
from plantwatch.service.wiring import mqtt_options
from plantwatch.settings import ConfigError, load_settings
from telemetry.counters import Counters

S = 1_000_000_000
SECRET = "hook-secret"


def opened(asset: str, start_s: int = 100) -> Alert:
    return Alert.opened(asset, "anomaly", start_s * S, "warning", 3.0, 0.99, ())


class Receiver:
    """A webhook receiver: records each POST, answering the scripted statuses first, then 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.script.pop(0) if receiver.script else 200
                if status == 200:
                    receiver.posts.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(body)["alert"] for _, body in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def notifier(store: SqliteAlertStore, output: Any, counters: Counters | None = None) -> AlertNotifier:
    return AlertNotifier(store, output, counters or Counters(), poll_s=0.05, max_backoff_s=0.2)


def test_a_webhook_gets_each_change_signed_and_a_restart_goes_on_where_it_stopped(
    store: SqliteAlertStore, receiver: Receiver
) -> None:
    first = notifier(store, Webhook("cmms", receiver.url, SECRET))
    first.start()
    wait_until(lambda: store.delivered("webhook:cmms") is not None, 10, "the webhook's first place in the order")
    alert = store.insert(opened("pump-1"))
    assert alert.id is not None
    wait_until(lambda: len(receiver.posts) == 1, 10, "the opened alert delivered")
    store.act(AlertAction(alert.id, 1, "shift-a", "acknowledged"))
    wait_until(lambda: len(receiver.posts) == 2, 10, "the acknowledgement delivered")
    first.stop()

    headers, body = receiver.posts[0]
    assert hmac.compare_digest(
        headers["X-Plantwatch-Signature"], signature(SECRET, headers["X-Plantwatch-Timestamp"], body)
    )
    expected = (
        "sha256="
        + hmac.new(SECRET.encode(), f"{headers['X-Plantwatch-Timestamp']}.".encode() + body, hashlib.sha256).hexdigest()
    )
    assert headers["X-Plantwatch-Signature"] == expected
    assert [a["acknowledged_by"] for a in receiver.alerts()] == [None, "shift-a"]
    assert receiver.posts[1][0]["X-Plantwatch-Delivery"] == f"{alert.id}.{store_stamp(store, alert.id)}"

    store.update(dataclasses.replace(alert, state="resolved", resolved_at_ns=200 * S))  # while no notifier runs
    second = notifier(store, Webhook("cmms", receiver.url, SECRET))
    second.start()
    wait_until(lambda: len(receiver.posts) == 3, 10, "the change made while stopped delivered after the restart")
    second.stop()
    assert [a["state"] for a in receiver.alerts()] == ["open", "open", "resolved"]  # none twice


def store_stamp(store: SqliteAlertStore, alert_id: int) -> int | None:
    found = store.get(alert_id)
    return None if found is None else found.updated_at_ns


def test_a_webhook_that_fails_is_tried_again_and_one_that_refuses_is_skipped(
    store: SqliteAlertStore, receiver: Receiver
) -> None:
    counters = Counters()
    receiver.script = [503, 500, 400]  # down twice, then it refuses the first alert for good
    feed = notifier(store, Webhook("chat", receiver.url), counters)
    feed.start()
    wait_until(lambda: store.delivered("webhook:chat") is not None, 10, "the webhook's first place in the order")
    refused, taken = store.insert(opened("pump-1")), store.insert(opened("pump-2"))
    wait_until(lambda: len(receiver.posts) == 1, 10, "the second alert delivered")
    feed.stop()
    assert [a["id"] for a in receiver.alerts()] == [taken.id]
    assert "X-Plantwatch-Signature" not in receiver.posts[0][0]  # no secret: unsigned
    text = counters.render()
    assert 'plantwatch_alert_delivery_failures_total{output="webhook:chat"} 2.0' in text
    assert 'plantwatch_alert_deliveries_refused_total{output="webhook:chat"} 1.0' in text
    assert refused.id != taken.id


class Subscriber:
    """A client subscribed to ``topic`` that keeps every payload it gets (the retained one first)."""

    def __init__(self, server: MosquittoServer, topic: str) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_message = lambda client, userdata, message: self.payloads.append(json.loads(message.payload))
        self._client.connect(server.host, server.port)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def latest(self) -> dict[str, Any]:
        return self.payloads[-1] if self.payloads else {}


def options(server: MosquittoServer) -> MqttOptions:
    return MqttOptions(host=server.host, port=server.port, client_id="pw-test-out", subscription="unused/#")


def test_each_asset_has_its_outstanding_alerts_retained_on_its_topic(
    store: SqliteAlertStore, mosquitto: MosquittoServer
) -> None:
    topic = "pw-test-alerts/{asset}"
    watcher = Subscriber(mosquitto, "pw-test-alerts/#")
    feed = notifier(store, MqttAlertPublisher(options(mosquitto), topic, store))
    feed.start()
    try:
        wait_until(lambda: store.delivered("mqtt") is not None, 10, "the publisher's first place in the order")
        alert = store.insert(opened("mixer-7"))
        assert alert.id is not None
        wait_until(lambda: watcher.latest().get("active") is True, 10, "the open alert published")
        assert [a["id"] for a in watcher.latest()["alerts"]] == [alert.id]
        assert watcher.latest()["asset"] == "mixer-7"

        store.update(dataclasses.replace(alert, state="resolved", resolved_at_ns=200 * S))
        wait_until(lambda: watcher.latest().get("active") is False, 10, "the resolution published")
        # Resolved by itself and not acknowledged: still outstanding, as ISA-18.2 asks.
        assert [a["state"] for a in watcher.latest()["alerts"]] == ["resolved"]

        store.act(AlertAction(alert.id, 1, "shift-b", "acknowledged"))
        wait_until(lambda: watcher.latest().get("alerts") == [], 10, "the acknowledgement clearing the asset")
        late = Subscriber(mosquitto, "pw-test-alerts/mixer-7")  # a display that connects afterwards
        wait_until(
            lambda: late.latest() == {"asset": "mixer-7", "active": False, "alerts": []}, 10, "the retained state"
        )
        late.close()
    finally:
        feed.stop()
        watcher.close()


def test_a_broker_that_is_down_holds_the_changes_until_it_is_back(store: SqliteAlertStore, tmp_path: Path) -> None:
    from servers import free_port, run_mosquitto

    port = free_port()
    down = MosquittoServer("127.0.0.1", port, f"mqtt://127.0.0.1:{port}")
    counters = Counters()
    feed = notifier(store, MqttAlertPublisher(options(down), "pw-test-alerts/{asset}", store), counters)
    feed.start()
    try:
        wait_until(lambda: store.delivered("mqtt") is not None, 10, "the publisher's first place in the order")
        store.insert(opened("press-2"))
        wait_until(lambda: "plantwatch_alert_delivery_failures_total" in counters.render(), 10, "a failure")
        with run_mosquitto(tmp_path, port=port) as server:
            watcher = Subscriber(server, "pw-test-alerts/press-2")
            wait_until(lambda: watcher.latest().get("active") is True, 30, "the alert published once the broker is up")
            watcher.close()
    finally:
        feed.stop()
    assert [a["asset"] for a in watcher.latest()["alerts"]] == ["press-2"]
    assert counters.get("plantwatch_alert_delivery_failures_total", output="mqtt") >= 1  # tried while down
    assert counters.get("plantwatch_alert_deliveries_total", output="mqtt") == 1


def test_an_alert_topic_inside_the_subscription_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "plantwatch.yaml"
    config.write_text(
        "storage: {kind: sqlite}\nmqtt: {topic_template: 'plant/{asset}/{sensor}'}\n"
        "alerts: {mqtt_topic: 'plant/alerts/{asset}'}\n"
    )
    settings = load_settings(config)
    with pytest.raises(ConfigError, match="alerts.mqtt_topic: .* matches mqtt.topic_template"):
        mqtt_options(settings, TopicTemplate(settings.mqtt.topic_template))


@pytest.mark.parametrize(
    ("yaml_alerts", "message"),
    [
        ("{webhooks: {cmms: {url: 'https://x/h', secret: s}}}", "PLANTWATCH_ALERTS__WEBHOOKS__CMMS__SECRET"),
        ("{webhooks: {cmms: {url: 'ftp://x/h'}}}", "alerts.webhooks.cmms.url"),
        ("{webhooks: {CMMS-1: {url: 'https://x/h'}}}", "lower-case letters"),
        ("{mqtt_topic: 'alerts/+/{asset}'}", "alerts.mqtt_topic"),
        ("{mqtt_topic: 'alerts/all'}", "{asset}"),
        ("{mqtt_topic: 'alerts/{line}/{asset}'}", "only {asset} is filled in"),
    ],
)
def test_bad_output_settings_are_named(tmp_path: Path, yaml_alerts: str, message: str) -> None:
    config = tmp_path / "plantwatch.yaml"
    config.write_text(f"storage: {{kind: sqlite}}\nalerts: {yaml_alerts}\n")
    with pytest.raises(ConfigError, match=message.replace("+", "\\+").replace("{", "\\{")):
        load_settings(config)


def test_a_shelved_alert_is_silent_on_webhooks_but_shown_shelved_in_the_mqtt_state(
    store: SqliteAlertStore, receiver: Receiver
) -> None:
    counters = Counters()
    feed = notifier(store, Webhook("pager", receiver.url), counters)
    feed.start()
    try:
        wait_until(lambda: store.delivered("webhook:pager") is not None, 10, "the webhook's first place in the order")
        quiet, loud = store.insert(opened("pump-1")), store.insert(opened("pump-2"))
        wait_until(lambda: len(receiver.posts) == 2, 10, "both opened alerts delivered")
        until = time.time_ns() + 3600 * S
        store.act(AlertAction(quiet.id or 0, 1, "shift-a", "shelved", "pump out for service", shelved_until_ns=until))
        store.act(AlertAction(quiet.id or 0, 2, "shift-a", "commented", "still out"))
        store.act(AlertAction(loud.id or 0, 3, "shift-a", "commented", "looking"))
        wait_until(lambda: len(receiver.posts) == 3, 10, "the unshelved alert's change delivered")
        wait_until(
            lambda: counters.get("plantwatch_alert_deliveries_silenced_total", output="webhook:pager") >= 1,
            10,
            "the shelved alert's changes counted as silenced",
        )
    finally:
        feed.stop()
    assert [a["id"] for a in receiver.alerts()] == [quiet.id, loud.id, loud.id]
    assert MqttAlertPublisher.notifies is False  # the retained state shows shelved alerts, marked shelved
