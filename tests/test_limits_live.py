"""Publisher limits through real Mosquitto and VictoriaMetrics: more assets and sensors than allowed.

The pipeline runs in-process with the wiring of `plantwatch run` (as in tests/test_delivery.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from servers import MosquittoServer, VictoriaServer
from waiting import wait_until

from ingest.replay import Publisher
from plantwatch.service.wiring import Service, build_service
from plantwatch.settings import load_settings

pytestmark = pytest.mark.integration

ASSETS = [f"limit-pump-{i}" for i in range(7)]  # the first 3 are admitted (mqtt.max_assets=3)
FRAMES = 5  # per asset
START_S = 1_600_000_000


def _service(tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer) -> Service:
    settings = load_settings(
        None,
        mqtt__url=mosquitto.url,
        mqtt__client_id="pw-limits",
        mqtt__topic_template="limits/{asset}",
        mqtt__max_assets=3,
        mqtt__max_sensors_per_asset=2,
        storage__kind="influxdb",
        storage__batch_size=50,
        storage__flush_interval_s=0.1,
        influx__url=victoria.url,
        influx__token="t",
        alerts__store_url=f"sqlite:///{tmp_path / 'alerts.db'}",
    )
    return build_service(settings)


def _frame(second: int, **values: float) -> bytes:
    return json.dumps({"ts": START_S + second, "values": values}).encode()


def test_assets_and_sensors_beyond_the_limits_are_refused_counted_acknowledged_and_the_rest_stored(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ingest.mqtt_source")
    service = _service(tmp_path, mosquitto, victoria)
    service.pipeline.start()
    publisher = Publisher("127.0.0.1", mosquitto.port, client_id="pub-limits")
    try:
        assert service.pipeline.source.connected.wait(10), "plantwatch did not connect to Mosquitto"
        # One publisher at QoS 1: the broker delivers in this order, so the first three assets take the slots.
        for asset in ASSETS:
            for second in range(FRAMES):
                publisher.publish(f"limits/{asset}", _frame(second, a=1.0 + second, b=2.0))
        # A third sensor for an admitted asset: dropped, its two known sensors in the same frame kept.
        publisher.publish(f"limits/{ASSETS[0]}", _frame(FRAMES, a=9.0, b=9.5, c=3.0))
        publisher.flush()
        refused = (len(ASSETS) - 3) * FRAMES
        counters = service.counters
        wait_until(
            lambda: (
                counters.get("plantwatch_messages_rejected_total", reason="too_many_assets") == refused
                and counters.get("plantwatch_messages_rejected_total", reason="too_many_sensors") == 1
                and counters.get("plantwatch_readings_written_total") >= 3 * FRAMES + 1
            ),
            60,
            f"{refused} too_many_assets, 1 too_many_sensors and {3 * FRAMES + 1} readings written",
        )
        for asset, frames in zip(ASSETS[:3], (FRAMES + 1, FRAMES, FRAMES), strict=True):
            for sensor in ("a", "b"):
                assert victoria.distinct_timestamps(f'{{__name__="readings_{sensor}",asset="{asset}"}}') == frames
        assert victoria.count_samples(f'{{__name__="readings_c",asset="{ASSETS[0]}"}}') == 0
        assert victoria.count_samples(f'{{__name__=~"readings_.*",asset=~"{"|".join(ASSETS[3:])}"}}') == 0
        health = service.pipeline.health_report()
        assert health["status"] == "ok"
        warnings = [r.getMessage() for r in caplog.records if "too_many_assets" in r.getMessage()]
        assert len(warnings) == 1, warnings  # logged once per reason, then only counted
        assert "mqtt.max_assets=3" in warnings[0]
    finally:
        service.pipeline.stop()

    # The refused messages were acknowledged: a restart in the same persistent session gets none of
    # them again. The broker delivers the queued messages first, so once the marker is stored,
    # anything redelivered would have been received before it.
    again = _service(tmp_path, mosquitto, victoria)
    again.pipeline.start()
    try:
        assert again.pipeline.source.connected.wait(10), "plantwatch did not reconnect to Mosquitto"
        publisher.publish(f"limits/{ASSETS[1]}", _frame(100, a=5.0, b=5.0))
        publisher.flush()
        wait_until(lambda: again.counters.get("plantwatch_readings_written_total") >= 1, 60, "the marker stored")
        assert again.counters.get("plantwatch_messages_received_total") == 1
        assert again.counters.total("plantwatch_messages_rejected_total") == 0
    finally:
        again.pipeline.stop()
        publisher.close()
