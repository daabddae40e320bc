"""Each asset's outstanding alerts, published retained on an MQTT topic of its own.

SCADA and HMI systems subscribe to topics as they do to sensors: the retained message on
``plantwatch/alerts/{asset}`` is the asset's current alert state, which a subscriber gets at once
when it connects and again whenever it changes. An alert is outstanding while it is open, and after it
resolved by itself until someone acknowledges it (ISA-18.2's return to normal unacknowledged); an
asset with none publishes an empty list, so a display clears.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as mqtt

from alerts.model import STATE_OPEN, Alert
from alerts.store import AlertStore
from api.schemas import AlertOut
from ingest.mqtt_source import MqttOptions, paho_client
from plantwatch.outputs.base import DeliveryFailed, check_topic_template

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0  # the broker's PUBACK must come within this, or the alert is delivered again


class MqttAlertPublisher:
    """Publishes an asset's outstanding alerts, retained, after each change of one of them."""

    name = "mqtt"
    notifies = False  # the asset's state, shelved alerts included (each says it is shelved)

    def __init__(self, options: MqttOptions, topic_template: str, store: AlertStore) -> None:
        check_topic_template(topic_template)
        self._options = options
        self._template = topic_template
        self._store = store
        self._connected = threading.Event()
        self._client = self._make_client()

    def start(self) -> None:
        opts = self._options
        self._client.connect_async(opts.host, opts.port, keepalive=opts.keepalive_s)
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def topic(self, asset: str) -> str:
        return self._template.replace("{asset}", asset)

    def deliver(self, alert: Alert) -> None:
        where = f"MQTT broker {self._options.url}"
        if not self._connected.is_set():
            raise DeliveryFailed(f"{where}: not connected")
        info = self._client.publish(self.topic(alert.asset), self.state(alert.asset), qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeliveryFailed(f"{where}: publish failed ({mqtt.error_string(info.rc)})")
        try:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # the connection dropped meanwhile
            raise DeliveryFailed(f"{where}: {exc}") from None
        if not info.is_published():
            raise DeliveryFailed(f"{where}: no PUBACK within {PUBLISH_TIMEOUT_S:g} s")

    def state(self, asset: str) -> bytes:
        """The retained payload: the asset's outstanding alerts, newest first, as ``GET /alerts`` shows them."""
        found = {a.id: a for a in self._store.list(asset=asset, state=STATE_OPEN)}
        found |= {a.id: a for a in self._store.list(asset=asset, acknowledged=False)}
        now = time.time_ns()
        outstanding = sorted(found.values(), key=lambda a: (a.started_at_ns, a.id or 0), reverse=True)
        payload = {
            "asset": asset,
            "active": any(a.state == STATE_OPEN for a in outstanding),
            "alerts": [AlertOut.from_alert(a, now).model_dump(mode="json") for a in outstanding],
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    def _make_client(self) -> mqtt.Client:
        opts = self._options
        # Its own client id: a second connection with the subscriber's id would take over its session.
        client = paho_client(opts, f"{opts.client_id}-alerts" if opts.client_id else "", clean_start=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("alert publisher: the MQTT broker %s refused the connection: %s", self._options.url, reason)
            return
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, *_: object) -> None:
        self._connected.clear()
