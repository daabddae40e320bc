"""Builds the live service from settings: pipeline + alert store + HTTP API (pipeline runs in the lifespan)."""

from __future__ import annotations

import gc
import logging
import os
import queue
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from alerts.lifecycle import AlertManager
from alerts.model import Alert
from alerts.retrying import AlertStoreStopped, WaitingStore
from alerts.store import AlertStore, StoreOpenError, open_store
from api.app import create_app
from api.hooks import ServiceHooks
from api.keys import KeyFile, KeyFileError
from detector.regimes import OnlineRegimes
from detector.types import Verdict
from ingest.decode import Decoder
from ingest.limits import PublisherLimits
from ingest.messages import DecodeError, Inbound, Reading
from ingest.mqtt_source import MqttOptions, MqttSource
from ingest.sink import InfluxSink, Sink, SqliteSink
from ingest.tls import TlsFiles
from ingest.topics import TopicTemplate
from plantwatch.maintenance.rul_tracker import RulTracker, load_rul_tracker
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.maintenance.trends import RegimeConfig
from plantwatch.outputs.base import AlertOutput
from plantwatch.outputs.mqtt import MqttAlertPublisher
from plantwatch.outputs.webhook import Webhook
from plantwatch.paths import why_not_writable_file
from plantwatch.service.checkpointing import StatePolicy
from plantwatch.service.listen import listening_url
from plantwatch.service.model_store import saved_assets
from plantwatch.service.notifier import AlertNotifier
from plantwatch.service.persistence import TRENDS_NAME, ModelPersistence
from plantwatch.service.pipeline import Pipeline
from plantwatch.service.receiver import ReceiverProcess
from plantwatch.service.sensor_checks import SensorCheckConfig
from plantwatch.settings import ApiSettings, ConfigError, Settings
from telemetry.counters import Counters

if TYPE_CHECKING:  # nats-py is the optional extra `nats`: imported by build_worker_service only
    from plantwatch.service.scaleout import Partition, PartitionedPipeline, SourceFactory

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    counters: Counters
    pipeline: Pipeline
    store: AlertStore
    app: FastAPI

    @property
    def runner(self) -> Pipeline:
        return self.pipeline


@dataclass
class WorkerService:
    """``source: nats``: the pipelines of the partitions this worker holds (:mod:`plantwatch.service.scaleout`)."""

    settings: Settings
    counters: Counters
    workers: PartitionedPipeline
    store: AlertStore
    app: FastAPI

    @property
    def runner(self) -> PartitionedPipeline:
        return self.workers


def build_sink(settings: Settings, counters: Counters, stop: threading.Event) -> Sink:
    if settings.storage.kind == "sqlite":
        path = settings.storage.sqlite_path
        problem = why_not_writable_file(Path(path))  # sqlite3 would say only "unable to open database file"
        if problem is not None:
            raise ConfigError(f"storage.sqlite_path: cannot use the SQLite file {path}: {problem}")
        try:
            return SqliteSink(path, counters=counters)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"storage.sqlite_path: cannot open the SQLite file {path}: {exc}") from None
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
        tls_files=TlsFiles(influx.ca_file, influx.cert_file, influx.key_file),
    )


# A PUBLISH packet's bytes besides its payload: fixed header, topic (at most 65,535 bytes), packet id
# and properties. Maximum Packet Size is the payload limit plus this, so no payload within
# mqtt.max_payload_bytes is refused by the broker for its topic's length.
PACKET_OVERHEAD_BYTES = 65_536 + 1_024


def mqtt_options(settings: Settings, template: TopicTemplate) -> MqttOptions:
    m = settings.mqtt
    if m.dead_letter_topic:
        consequence = "rejects would be consumed again; choose a topic outside the subscription"
        _refuse_inside_subscription(template, "mqtt.dead_letter_topic", m.dead_letter_topic, consequence)
    if settings.alerts.mqtt_topic is not None:
        consequence = (
            "the service would read its own alerts as readings; choose a topic outside the subscription "
            "(e.g. plantwatch-alerts/{asset})"
        )
        _refuse_inside_subscription(template, "alerts.mqtt_topic", settings.alerts.mqtt_topic, consequence)
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
        tls_files=TlsFiles(m.ca_file, m.cert_file, m.key_file),
        username=m.username,
        password=m.password.get_secret_value() if m.password else None,
        dead_letter_topic=m.dead_letter_topic,
        reconnect_min_s=m.reconnect_min_s,
        reconnect_max_s=m.reconnect_max_s,
        max_packet_bytes=m.max_payload_bytes + PACKET_OVERHEAD_BYTES,
    )


def publisher_limits(settings: Settings) -> PublisherLimits:
    """What publishers may create (``mqtt.max_assets``, ``.max_sensors_per_asset``, ``.max_tags_per_asset``),
    the assets of the saved models admitted first."""
    m = settings.mqtt
    limits = PublisherLimits(
        max_assets=m.max_assets, max_sensors_per_asset=m.max_sensors_per_asset, max_tags_per_asset=m.max_tags_per_asset
    )
    if settings.detector.model_dir:
        for asset, sensors in saved_assets(ModelPersistence(settings.detector.model_dir).model_dir).items():
            if asset != TRENDS_NAME:
                limits.remember(asset, sensors)
    return limits


def _refuse_inside_subscription(template: TopicTemplate, key: str, topic: str, consequence: str) -> None:
    """ConfigError naming ``key`` when the service publishes ``topic`` where it subscribes (for a topic
    per asset, ``{asset}`` stands for any one asset's name)."""
    try:
        template.parse(topic.replace("{asset}", "pump-1"))
    except DecodeError:
        return
    raise ConfigError(f"{key}: {topic!r} matches mqtt.topic_template, so {consequence}")


def alert_outputs(settings: Settings, options: MqttOptions, store: AlertStore) -> list[AlertOutput]:
    """The outputs the settings ask for: the MQTT publisher (``alerts.mqtt_topic``) and each webhook."""
    outputs: list[AlertOutput] = []
    if settings.alerts.mqtt_topic is not None:  # mqtt_options refused one inside the subscription
        outputs.append(MqttAlertPublisher(options, settings.alerts.mqtt_topic, store))
    for name, hook in settings.alerts.webhooks.items():
        secret = hook.secret.get_secret_value() if hook.secret is not None else None
        outputs.append(Webhook(name, hook.url, secret, timeout_s=hook.timeout_s))
    return outputs


def describe_alert_outputs(settings: Settings) -> str:
    """Where alert changes go besides the API, for ``plantwatch check`` and the start-up log."""
    alerts = settings.alerts
    said = [f"MQTT {alerts.mqtt_topic} (retained)"] if alerts.mqtt_topic is not None else []
    for name, hook in alerts.webhooks.items():
        said.append(f"webhook {name} {hook.url} ({'signed' if hook.secret else 'unsigned'})")
    if not said:
        return "no alert output (alerts.mqtt_topic, alerts.webhooks): the API only"
    return "alerts out: " + ", ".join(said)


def check_api_access(api: ApiSettings) -> str:
    """ConfigError when the API would serve other machines with no API key to ask for: anyone who
    reached the port could read every alert and throw away learned baselines. Else the line to log
    once the service has started: whether keys are in use, and in which file."""
    try:
        active = KeyFile(api.keys_file).active()
    except KeyFileError as exc:
        raise ConfigError(f"api.keys_file: {exc}") from None
    where = Path(api.keys_file).resolve()
    if api.serves_others and not active:
        raise ConfigError(
            f"api.host: {api.host} serves other machines, but the API key file {where} holds no key, so "
            f"anyone who reaches port {api.port} could read every alert and relearn any baseline; create one "
            "with `plantwatch keys create NAME --scope admin` (with the same --config), or bind api.host: 127.0.0.1"
        )
    if active:
        return f"API keys: {len(active)} active in {where}; every call but /healthz needs one"
    return f"no API key in {where}: the API answers anyone on this machine (plantwatch keys create)"


def _rul_loader(settings: Settings) -> Callable[[], RulTracker | None]:
    """``maintenance.rul_model``'s trackers: loaded once now (a bad model is refused at start), and
    again for each further call (a worker's partitions each have their own)."""
    m = settings.maintenance

    def load() -> RulTracker | None:
        if m.rul_model is None:
            return None
        try:
            return load_rul_tracker(
                m.rul_model,
                time_unit_s=m.rul_time_unit_s,
                every_rows=m.rul_every_rows,
                history_rows=m.rul_history_rows,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"maintenance.rul_model: cannot load {m.rul_model}: {exc}") from None

    loaded = [load()]  # at once: a bad model is refused at start

    def tracker() -> RulTracker | None:
        return loaded.pop() if loaded else load()

    return tracker


def _decoder(settings: Settings, template: TopicTemplate) -> Decoder:
    return Decoder(
        template,
        max_payload_bytes=settings.mqtt.max_payload_bytes,
        max_future_ns=round(settings.mqtt.max_future_s * 1e9),
        payload_tags=settings.mqtt.payload_tags,
        limits=publisher_limits(settings),
    )


def _open_alert_store(settings: Settings) -> AlertStore:
    try:
        return open_store(settings.alerts.store_url)
    except StoreOpenError as exc:
        raise ConfigError(f"alerts.store_url: {exc}") from None


def _alert_manager(settings: Settings, store: AlertStore, stop: threading.Event, counters: Counters) -> AlertManager:
    return AlertManager(
        WaitingStore(store, stop, on_retry=lambda: counters.inc("plantwatch_alert_store_retries_total")),
        resolve_after_s=settings.alerts.resolve_after_s,
        critical_probability=settings.alerts.critical_probability,
        counters=counters,
        reopen_within_s=settings.alerts.reopen_within_s,
        asset_tags=settings.alerts.asset_tags,
    )


def _pipeline_settings(settings: Settings) -> dict[str, Any]:
    """The Pipeline arguments every pipeline of these settings has."""
    return {
        "detector_config": settings.detector.as_config,
        "batch_size": settings.storage.batch_size,
        "flush_interval_s": settings.storage.flush_interval_s,
        "state": StatePolicy(settings.detector.checkpoint_interval_s, settings.detector.evict_idle_after_s),
        "sensor_checks": SensorCheckConfig(
            settings.alerts.stale_after_s, settings.alerts.flat_after_s, settings.alerts.sensor_limits
        ),
    }


def _maintenance_tracker(settings: Settings, rul: RulTracker | None) -> MaintenanceTracker:
    """The health trends (one per operating regime where regimes are known) and the RUL tracker."""
    m = settings.maintenance
    regimes: RegimeConfig | None = None
    if m.operating_settings:
        tolerances = tuple(m.operating_settings.values())
        regimes = RegimeConfig(
            tuple(m.operating_settings),
            lambda: OnlineRegimes(tolerances, m.regime_settle_rows, m.max_regimes),
            "operating_settings",
        )
    elif rul is not None and (fixed := rul.regimes) is not None:
        regimes = RegimeConfig(rul.settings_columns, lambda: fixed, rul.model_name)
    return MaintenanceTracker(m.horizon_s, m.window_s, rul=rul, regimes=regimes)


def build_service(settings: Settings, counters: Counters | None = None) -> Service:
    """The single-process service (``source: mqtt``); :func:`build_worker_service` for ``source: nats``."""
    counters = counters or Counters()
    load_rul = _rul_loader(settings)
    template = TopicTemplate(settings.mqtt.topic_template)
    options = mqtt_options(settings, template)
    decoder = _decoder(settings, template)
    store = _open_alert_store(settings)
    stop = threading.Event()
    manager = _alert_manager(settings, store, stop, counters)
    tracker = _maintenance_tracker(settings, load_rul())
    sink = build_sink(settings, counters, stop)

    def make_source(inbound: queue.Queue[Inbound]) -> MqttSource | ReceiverProcess:
        if settings.mqtt.receiver == "process":
            return ReceiverProcess(options, decoder, inbound, counters)  # pickled to the child as it is now
        return MqttSource(options, decoder, inbound, counters)

    pipeline = Pipeline(
        source_factory=make_source,
        sink=sink,
        alerts=manager,
        counters=counters,
        max_in_flight=settings.mqtt.max_in_flight,
        stop_event=stop,
        model_dir=settings.detector.model_dir,
        maintenance=tracker,
        **_pipeline_settings(settings),
    )

    notifiers = [AlertNotifier(store, output, counters) for output in alert_outputs(settings, options, store)]

    def on_startup() -> None:
        pipeline.start()
        for notifier in notifiers:
            notifier.start()

    def on_shutdown() -> None:
        pipeline.stop()
        try:
            manager.flush()  # peak changes held back by write coalescing
        except AlertStoreStopped as exc:
            log.error("%s; changes held back by write coalescing are lost", exc)
        for notifier in notifiers:  # what they did not deliver yet, they deliver after the restart
            notifier.stop()
        store.close()

    hooks = _hooks(settings, store, counters, pipeline, tracker.snapshot, manager.close, on_startup, on_shutdown)
    app = create_app(hooks, settings.api.cors_origins)
    return Service(settings=settings, counters=counters, pipeline=pipeline, store=store, app=app)


def _hooks(
    settings: Settings,
    store: AlertStore,
    counters: Counters,
    pipeline: Pipeline | PartitionedPipeline,
    maintenance: Callable[[], list[dict[str, Any]]],
    resolve: Callable[[int], Alert | None],
    on_startup: Callable[[], None],
    on_shutdown: Callable[[], None],
) -> ServiceHooks:
    return ServiceHooks(
        store=store,
        counters=counters,
        health=pipeline.health_report,
        maintenance=maintenance,
        assets=pipeline.assets,
        relearn=pipeline.relearn,
        feedback=pipeline.feedback,
        resolve=resolve,
        scores=pipeline.scores,
        readings=pipeline.readings,
        keys=KeyFile(settings.api.keys_file),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )


class _Unclosed:
    """A sink the partitions of a worker share (SQLite: one connection, one lock); closed by the worker."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, readings: Sequence[Reading]) -> None:
        self.sink.write(readings)

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        self.sink.write_verdicts(verdicts)

    def close(self) -> None:
        pass


def build_worker_service(settings: Settings, counters: Counters | None = None) -> WorkerService:
    """One worker of several sharing a site through NATS JetStream (``source: nats``, docs/scaling.md)."""
    try:
        from ingest.nats_source import NatsLink, NatsOptions
        from plantwatch.service.scaleout import Partition, PartitionedPipeline
    except ImportError as exc:
        raise ConfigError(f"source: nats needs nats-py: pip install 'plantwatch[nats]' ({exc})") from None

    counters = counters or Counters()
    n = settings.nats
    if settings.alerts.mqtt_topic is not None or settings.alerts.webhooks:
        raise ConfigError(
            "alerts.mqtt_topic, alerts.webhooks: not available with source: nats yet (every worker would "
            "deliver every change); read alerts from the API or the shared alert store"
        )
    load_rul = _rul_loader(settings)
    template = TopicTemplate(settings.mqtt.topic_template)
    decoder = _decoder(settings, template)  # used on the NATS loop's thread only
    store = _open_alert_store(settings)
    worker = n.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    assert settings.detector.model_dir is not None  # Settings refuses source: nats without one
    state_root = Path(settings.detector.model_dir) / "partitions"
    shared_stop = threading.Event()
    shared_sink = _Unclosed(build_sink(settings, counters, shared_stop)) if settings.storage.kind == "sqlite" else None

    def build(number: int, make_source: SourceFactory, fatal: threading.Event) -> Partition:
        stop = threading.Event()
        manager = _alert_manager(settings, store, stop, counters)  # reloads the open alerts now
        tracker = _maintenance_tracker(settings, load_rul())
        pipeline = Pipeline(
            source_factory=make_source,
            sink=shared_sink or build_sink(settings, counters, stop),
            alerts=manager,
            counters=counters,
            max_in_flight=n.max_in_flight,
            stop_event=stop,
            model_dir=str(state_root / f"p{number}"),
            maintenance=tracker,
            fatal=fatal,
            watch_gauges=False,
            **_pipeline_settings(settings),
        )
        return Partition(number, pipeline, manager, tracker)

    link = NatsLink(
        NatsOptions(
            url=n.url,
            stream=n.stream,
            prefix=n.subject_prefix,
            partitions=n.partitions,
            ack_wait_s=n.ack_wait_s,
            max_in_flight=n.max_in_flight,
            name=f"plantwatch-{worker}",
            max_age_s=n.stream_max_age_s,
        )
    )
    workers = PartitionedPipeline(
        link=link,
        bucket=n.lease_bucket,
        worker=worker,
        lease_s=n.lease_s,
        build=build,
        decoder=decoder,
        counters=counters,
        store=store,
    )

    def on_startup() -> None:
        try:
            workers.start()
        except OSError as exc:
            raise ConfigError(f"nats.url: {exc}") from None

    def on_shutdown() -> None:
        workers.stop()
        shared_stop.set()
        if shared_sink is not None:
            shared_sink.sink.close()
        store.close()

    hooks = _hooks(settings, store, counters, workers, workers.maintenance, workers.resolve, on_startup, on_shutdown)
    app = create_app(hooks, settings.api.cors_origins)
    return WorkerService(settings=settings, counters=counters, workers=workers, store=store, app=app)


def freeze_startup_heap() -> None:
    """Move everything start-up made (modules, models, the app) out of the garbage collector's reach.

    A full collection walks every tracked object; with the start-up heap in it, each one paused an
    API answer for tens of milliseconds (bench/alerts_api.py: GET /alerts of 1,000 alerts p99 96 ms,
    30 ms frozen). Those objects live as long as the process anyway.
    """
    gc.collect()
    gc.freeze()


def serve(service: Service | WorkerService, sockets: list[socket.socket]) -> int:
    """Run the API on ``sockets`` (from ``bind_api``; the pipeline starts in its lifespan) until
    SIGINT/SIGTERM or a fatal storage failure.

    Exit codes: 0 after a clean stop on a signal, 2 when storage failed fatally or start-up failed.
    """
    # log_config=None: uvicorn's loggers keep no handlers of their own and propagate to the root
    # logger, so its lines (the access log at INFO included) have the service's format.
    config = uvicorn.Config(service.app, log_config=None, log_level=service.settings.log_level.lower(), lifespan="on")
    server = uvicorn.Server(config)

    def watch_fatal() -> None:
        service.runner.fatal.wait()
        server.should_exit = True

    threading.Thread(target=watch_fatal, name="plantwatch-fatal-watch", daemon=True).start()
    freeze_startup_heap()
    # uvicorn names the address only when it binds it itself.
    log.info("API listening on %s", listening_url(sockets))
    try:
        stopped_by = _run_catching_stop_signals(server, sockets)
    except SystemExit as exc:  # uvicorn exits when the lifespan start-up failed
        if not exc.code:
            raise
        log.critical("the service did not start (the error is above)")
        return 2
    if service.runner.fatal.is_set():
        log.critical("stopped: %s", service.runner.health.fatal)
        return 2
    if stopped_by:
        model_dir = service.settings.detector.model_dir
        saved = f"; the learned models are in {model_dir}" if model_dir else " (no detector.model_dir: models not kept)"
        log.info("stopped on %s: pipeline stopped, alerts flushed%s", signal.Signals(stopped_by[0]).name, saved)
    return 0


def _run_catching_stop_signals(server: uvicorn.Server, sockets: list[socket.socket]) -> list[int]:
    """Run ``server``; returns the stop signals received (SIGINT, SIGTERM), which end the process no further.

    uvicorn handles the signals while it serves (graceful shutdown, our lifespan stops the pipeline)
    and, once done, hands each to the handler that was installed before it, so the host program
    decides. Python's own handlers would turn that into a KeyboardInterrupt traceback (SIGINT) or
    death by signal (SIGTERM) after a clean stop; ours note the signal and let ``serve`` return.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        server.run(sockets=sockets)
        return received

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received
