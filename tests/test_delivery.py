"""No reading is lost: storage outages and plantwatch restarts, on real Mosquitto and VictoriaMetrics.

The pipeline is run in-process (no HTTP server needed) with the same wiring as `plantwatch run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers import MosquittoServer, VictoriaServer, free_port, run_mosquitto, run_victoria
from waiting import wait_until as _wait

from ingest.replay import Publisher, as_log, replay
from plantwatch.service import pipeline as pipeline_module
from plantwatch.service.wiring import Service, build_service
from plantwatch.settings import load_settings

pytestmark = pytest.mark.integration

SENSORS = ("a", "b", "c")


def _log(rows: int, start_s: int) -> object:
    rng = np.random.default_rng(start_s)
    ts = (start_s + np.arange(rows, dtype=np.int64)) * 10**9
    return as_log(ts, SENSORS, rng.normal(10.0, 1.0, size=(rows, len(SENSORS))))


def _service(tmp_path: Path, mqtt_port: int, influx_url: str, client_id: str, **overrides: Any) -> Service:
    settings = load_settings(
        None,
        **{
            "mqtt__url": f"mqtt://127.0.0.1:{mqtt_port}",
            "mqtt__client_id": client_id,
            "mqtt__topic_template": "site/{asset}",
            "mqtt__max_in_flight": 200,
            "storage__kind": "influxdb",
            "storage__batch_size": 100,
            "storage__flush_interval_s": 0.1,
            "influx__url": influx_url,
            "influx__token": "t",
            "alerts__store_url": f"sqlite:///{tmp_path / (client_id + '-alerts.db')}",
            "detector__baseline_rows": 50,
            **overrides,
        },
    )
    return build_service(settings)


def _publish(mqtt_port: int, topic: str, rows: int, start_s: int) -> None:
    publisher = Publisher("127.0.0.1", mqtt_port, client_id=f"pub-{start_s}")
    try:
        stats = replay(_log(rows, start_s), publisher, topic)  # type: ignore[arg-type]
    finally:
        publisher.close()
    assert stats.published == rows


def _wait_connected(service: Service) -> None:
    assert service.pipeline.source.connected.wait(10), "plantwatch did not connect to Mosquitto"


def test_readings_survive_a_storage_outage_and_healthz_says_so(
    tmp_path: Path, mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "STORAGE_STALL_S", 1.0)
    port = free_port()
    service = _service(tmp_path, mosquitto.port, f"http://127.0.0.1:{port}", "pw-outage")
    service.pipeline.start()
    try:
        _wait_connected(service)
        assert service.pipeline.health_report()["status"] == "ok"
        # Storage is down: nothing can be written, nothing may be acknowledged or dropped.
        _publish(mosquitto.port, "site/outage-pump", 400, start_s=1_600_000_000)
        _wait(lambda: not service.pipeline.health_report()["storage_ok"], 30, "/healthz to report the outage")
        report = service.pipeline.health_report()
        assert report["status"] == "degraded" and report["storage_write_pending_s"] >= 1.0
        assert service.counters.get("plantwatch_readings_written_total") == 0
        assert service.counters.total("plantwatch_sink_retries_total") > 0
        assert service.pipeline.health.fatal is None
        with run_victoria(tmp_path / "vm", port=port) as vm:
            _wait(lambda: service.counters.get("plantwatch_readings_written_total") >= 400, 60, "the backlog")
            assert vm.count_samples('{__name__=~"readings_.*",asset="outage-pump"}') == 400 * len(SENSORS)
            report = service.pipeline.health_report()
            assert report["storage_ok"] and report["storage_write_pending_s"] == 0.0
            # The histograms in /metrics: every delivery's wait, the outage's long ones among them.
            # The writer acknowledges, and observes, after the write the counter above already counts.
            sample = service.counters.registry.get_sample_value

            def acked() -> float:
                return sample("plantwatch_received_to_acked_seconds_count") or 0.0

            _wait(lambda: acked() >= 400, 30, "every delivery's acknowledgement observed")
            assert (sample("plantwatch_received_to_acked_seconds_bucket", {"le": "0.5"}) or 0.0) < acked()
            assert (sample("plantwatch_write_batch_readings_sum") or 0.0) >= 400
            assert "plantwatch_received_to_acked_seconds_bucket{" in service.counters.render()

            # And receipt -> verdict of each batch's oldest delivery: the outage's waited over a second.
            def judged() -> float:
                return sample("plantwatch_received_to_verdict_seconds_count") or 0.0

            waited = "plantwatch_received_to_verdict_seconds_sum"
            _wait(lambda: (sample(waited) or 0.0) >= 1.0, 30, "the backlog judged")
            assert (sample("plantwatch_received_to_verdict_seconds_bucket", {"le": "0.5"}) or 0.0) < judged()
    finally:
        service.pipeline.stop()


# Both receivers (the default, process, and thread: paho in the service's own process) keep the
# delivery guarantees; the tests below hold each to them.
RECEIVERS = pytest.mark.parametrize("receiver", ["process", "thread"])


@RECEIVERS
def test_readings_published_while_plantwatch_is_down_arrive_after_restart(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer, receiver: str
) -> None:
    topic = f"site/restart-pump-{receiver}"
    client_id = f"pw-restart-{receiver}"
    first = _service(tmp_path, mosquitto.port, victoria.url, client_id, mqtt__receiver=receiver)
    first.pipeline.start()
    _wait_connected(first)
    stored = f'{{__name__="readings_a",asset="restart-pump-{receiver}"}}'
    _publish(mosquitto.port, topic, 300, start_s=1_500_000_000)
    # Wait on distinct stored instants, not on a counter: a redelivered duplicate (at-least-once) would
    # inflate the counter and end the wait early.
    _wait(lambda: victoria.distinct_timestamps(stored) == 300, 60, "the first 300 stored")
    first.pipeline.stop()

    # Published while nobody is subscribed: the broker keeps them in plantwatch's persistent session.
    _publish(mosquitto.port, topic, 300, start_s=1_500_000_300)

    second = _service(tmp_path, mosquitto.port, victoria.url, client_id, mqtt__receiver=receiver)
    second.pipeline.start()
    try:
        # The writer counts a batch just after the server has taken it: wait for both, or a poll that
        # lands between the two sees the readings stored but not yet counted.
        _wait(
            lambda: (
                victoria.distinct_timestamps(stored) == 600
                and second.counters.get("plantwatch_readings_written_total") >= 300
            ),
            60,
            "the 300 queued while down stored by the restarted service",
        )
        assert victoria.distinct_timestamps(stored) == 600  # none lost: every instant of both runs is stored
    finally:
        second.pipeline.stop()


def test_plantwatch_reconnects_after_a_broker_restart(tmp_path: Path, victoria: VictoriaServer) -> None:
    from servers import run_mosquitto

    port = free_port()
    broker_dir = tmp_path / "broker"
    stored = '{__name__="readings_a",asset="reconnect-pump"}'
    with run_mosquitto(broker_dir, port=port):
        service = _service(tmp_path, port, victoria.url, "pw-reconnect")
        service.pipeline.start()
        _wait_connected(service)
        _publish(port, "site/reconnect-pump", 50, start_s=1_400_000_000)
        _wait(lambda: victoria.distinct_timestamps(stored) == 50, 60, "the first 50 stored")
    try:
        _wait(lambda: not service.pipeline.source.connected.is_set(), 10, "the disconnect to be noticed")
        assert service.pipeline.health_report()["status"] == "degraded"
        with run_mosquitto(broker_dir, port=port):
            _wait_connected(service)  # paho's capped backoff brings it back, and on_connect resubscribes
            _publish(port, "site/reconnect-pump", 50, start_s=1_400_000_050)
            _wait(lambda: victoria.distinct_timestamps(stored) == 100, 60, "the next 50 stored")
            assert service.pipeline.health_report()["status"] == "ok"
        # The broker was stopped while our last acknowledgements may have been in flight, so it may
        # redeliver a few (at-least-once): every reading must be there, duplicates are allowed here.
        assert victoria.distinct_timestamps(stored) == 100
    finally:
        service.pipeline.stop()


@RECEIVERS
def test_plantwatch_holds_no_more_than_max_in_flight_unacknowledged_whatever_the_broker_sends(
    tmp_path: Path, receiver: str
) -> None:
    # MQTT 3.1.1 has no Receive Maximum, and this broker caps nothing (max_inflight_messages 0): only
    # plantwatch's own bound stands between a storage outage and every queued reading in memory.
    with run_mosquitto(tmp_path, extra_config="max_inflight_messages 0\n") as broker:
        port = free_port()  # storage is down until the VictoriaMetrics below starts
        service = _service(
            tmp_path,
            broker.port,
            f"http://127.0.0.1:{port}",
            "pw-bound",
            mqtt__protocol="3.1.1",
            mqtt__max_in_flight=50,
            mqtt__receiver=receiver,
        )
        service.pipeline.start()
        try:
            _wait_connected(service)
            _publish(broker.port, "site/bound-pump", 400, start_s=1_400_000_000)
            source = service.pipeline.source
            _wait(lambda: source.unacknowledged == 50, 30, "the in-flight bound to be reached")
            held: list[int] = []
            retries = service.counters.total("plantwatch_sink_retries_total")

            def two_more_retries() -> bool:  # sampling the count all the while (about 3 s)
                held.append(source.unacknowledged)
                return service.counters.total("plantwatch_sink_retries_total") >= retries + 2

            _wait(two_more_retries, 30, "two more write retries")
            assert max(held) == 50  # held at the bound, with 350 more readings waiting at the broker
            assert service.counters.get("plantwatch_messages_received_total") <= 51  # the 51st waits for a slot
            assert "plantwatch_unacked_messages 50.0" in service.counters.render()
            with run_victoria(tmp_path / "vm", port=port) as vm:
                stored = '{__name__="readings_a",asset="bound-pump"}'
                _wait(lambda: vm.distinct_timestamps(stored) == 400, 60, "all 400 stored once storage is back")
                _wait(lambda: source.unacknowledged == 0, 30, "every delivery acknowledged")
        finally:
            service.pipeline.stop()
