"""Builds the live service from settings: pipeline + alert store + HTTP API (pipeline runs in the lifespan)."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from alerts.lifecycle import AlertManager
from alerts.store import AlertStore, open_store
from api.app import create_app
from ingest.decode import Decoder
from ingest.messages import DecodeError, Inbound
from ingest.mqtt_source import MqttOptions, MqttSource
from ingest.sink import InfluxSink, Sink, SqliteSink
from ingest.topics import TopicTemplate
from plantwatch.maintenance.rul_tracker import RulTracker, load_rul_tracker
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.pipeline import Pipeline
from plantwatch.settings import ConfigError, Settings
from telemetry.counters import Counters

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    counters: Counters
    pipeline: Pipeline
    store: AlertStore
    app: FastAPI


def build_sink(settings: Settings, counters: Counters, stop: threading.Event) -> Sink:
    if settings.storage.kind == "sqlite":
        return SqliteSink(settings.storage.sqlite_path, counters=counters)
    influx = settings.influx
    assert influx.token is not None  # guaranteed by Settings validation
    return InfluxSink(
        influx.url,
        influx.org,
        influx.bucket,
        influx.token.get_secret_value(),
        measurement=influx.measurement,
        anomaly_measurement=influx.anomaly_measurement,
        timeout_s=influx.timeout_s,
        counters=counters,
        stop_event=stop,
    )


def mqtt_options(settings: Settings, template: TopicTemplate) -> MqttOptions:
    m = settings.mqtt
    if m.dead_letter_topic:
        _refuse_looping_dead_letter(template, m.dead_letter_topic)
    return MqttOptions(
        host=m.host,
        port=m.port,
        client_id=m.client_id or "",
        subscription=template.subscription(),
        qos=m.qos,
        protocol=m.protocol,
        clean_start=m.clean_start,
        session_expiry_s=m.session_expiry_s,
        max_in_flight=m.max_in_flight,
        keepalive_s=m.keepalive_s,
        tls=m.tls,
        username=m.username,
        password=m.password.get_secret_value() if m.password else None,
        dead_letter_topic=m.dead_letter_topic,
        reconnect_min_s=m.reconnect_min_s,
        reconnect_max_s=m.reconnect_max_s,
    )


def _refuse_looping_dead_letter(template: TopicTemplate, topic: str) -> None:
    try:
        template.parse(topic)
    except DecodeError:
        return
    raise ConfigError(
        f"mqtt.dead_letter_topic: {topic!r} matches mqtt.topic_template, so rejects would be consumed "
        "again; choose a topic outside the subscription"
    )


def build_service(settings: Settings, counters: Counters | None = None) -> Service:
    counters = counters or Counters()
    m = settings.maintenance
    rul: RulTracker | None = None
    if m.rul_model is not None:
        try:
            rul = load_rul_tracker(
                m.rul_model,
                time_unit_s=m.rul_time_unit_s,
                every_rows=m.rul_every_rows,
                history_rows=m.rul_history_rows,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"maintenance.rul_model: cannot load {m.rul_model}: {exc}") from None
    template = TopicTemplate(settings.mqtt.topic_template)
    options = mqtt_options(settings, template)
    decoder = Decoder(
        template,
        max_payload_bytes=settings.mqtt.max_payload_bytes,
        max_future_ns=round(settings.mqtt.max_future_s * 1e9),
    )
    store = open_store(settings.alerts.store_url)
    manager = AlertManager(
        store,
        resolve_after_s=settings.alerts.resolve_after_s,
        critical_probability=settings.alerts.critical_probability,
        counters=counters,
    )
    tracker = MaintenanceTracker(m.horizon_s, m.window_s, rul=rul)
    stop = threading.Event()
    sink = build_sink(settings, counters, stop)

    def make_source(inbound: queue.Queue[Inbound]) -> MqttSource:
        return MqttSource(options, decoder, inbound, counters)

    pipeline = Pipeline(
        source_factory=make_source,
        sink=sink,
        alerts=manager,
        detector_config=settings.detector.as_config,
        counters=counters,
        batch_size=settings.storage.batch_size,
        flush_interval_s=settings.storage.flush_interval_s,
        max_in_flight=settings.mqtt.max_in_flight,
        stop_event=stop,
        model_dir=settings.detector.model_dir,
        maintenance=tracker,
    )

    def on_shutdown() -> None:
        pipeline.stop()
        manager.flush()  # peak changes held back by write coalescing
        store.close()

    app = create_app(
        store,
        counters,
        health=pipeline.health_report,
        on_startup=pipeline.start,
        on_shutdown=on_shutdown,
        maintenance=tracker.snapshot,
        relearn=pipeline.relearn,
    )
    return Service(settings=settings, counters=counters, pipeline=pipeline, store=store, app=app)


def serve(service: Service) -> int:
    """Run the API (which starts the pipeline) until interrupted or until storage fails fatally."""
    api = service.settings.api
    config = uvicorn.Config(
        service.app, host=api.host, port=api.port, log_level=service.settings.log_level.lower(), lifespan="on"
    )
    server = uvicorn.Server(config)

    def watch_fatal() -> None:
        service.pipeline.fatal.wait()
        server.should_exit = True

    threading.Thread(target=watch_fatal, name="plantwatch-fatal-watch", daemon=True).start()
    server.run()
    if service.pipeline.fatal.is_set():
        log.critical("stopped: %s", service.pipeline.health.fatal)
        return 2
    return 0
