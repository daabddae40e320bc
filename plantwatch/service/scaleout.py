"""A worker of a site that several share: one pipeline per partition it holds, on NATS JetStream.

With ``source: nats`` the service runs no single pipeline. A :class:`~plantwatch.service.partitions.LeaseKeeper`
decides which partitions this worker holds; for each it builds a whole :class:`Pipeline` — its own
source (the partition's durable consumer), writer, detector, alert manager, maintenance tracker and
state directory ``detector.model_dir/partitions/p<N>`` (checkpoints and readings log) — and stops it
when the partition goes. An asset lives in one partition (the server's subject mapping hashes its
name), so taking a partition over is a restart of that partition on another machine: its detector
restores the partition's latest checkpoint and scores again what the readings log holds after it, the
path a crashed single process takes (docs/reliability.md), and the consumer starts again at its
acknowledgement floor. ``model_dir`` must therefore be shared by the workers (one disk on one
machine; NFS or the like across machines: docs/scaling.md).

:class:`PartitionedPipeline` answers what the API asks of a pipeline (assets, scores, health, relearn,
feedback, an operator's resolve) from the partitions held here; an asset held by another worker is
unknown here (404), as it is in that worker's API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.js.errors import NotFoundError

from alerts.lifecycle import AlertManager
from alerts.model import Alert
from alerts.retrying import AlertStoreStopped
from alerts.store import AlertStore
from ingest.decode import Decoder
from ingest.messages import Inbound
from ingest.nats_source import NatsLink, NatsPartitionSource
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.partitions import LeaseKeeper
from plantwatch.service.pipeline import Pipeline
from plantwatch.service.writer import StageHealth
from telemetry.counters import Counters

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0  # a partition's threads must have ended by then, or its lease is not freed

SourceFactory = Callable[["queue.Queue[Inbound]"], NatsPartitionSource]


@dataclass
class Partition:
    """One partition's pipeline and the parts the API reaches through it."""

    number: int
    pipeline: Pipeline
    alerts: AlertManager
    maintenance: MaintenanceTracker


# Builds partition N's pipeline (not started) around the given source, sharing the worker's fatal event.
PartitionBuilder = Callable[[int, SourceFactory, threading.Event], Partition]


def check_nats(url: str, stream: str, timeout_s: float = 10.0) -> str:
    """``plantwatch check``'s line for ``source: nats``: the server answers, JetStream is on, and the
    stream exists (or will be created at start). Changes nothing; CheckFailed otherwise."""
    from plantwatch.service.reachability import CheckFailed

    async def probe() -> str:
        nc = await nats.connect(url, connect_timeout=timeout_s, allow_reconnect=False, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            await js.account_info()  # JetStream on for this account
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                return f"{url}: JetStream on; stream {stream}: none yet: will be created at start"
            return f"{url}: JetStream on; stream {stream}: {info.state.messages} message(s)"
        finally:
            await nc.close()

    try:
        return asyncio.run(asyncio.wait_for(probe(), timeout_s))
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise CheckFailed(f"{url}: {exc or type(exc).__name__}") from None


class PartitionStuck(RuntimeError):
    """A partition's threads did not end: its lease must not be freed."""


class PartitionedPipeline:
    """The pipelines of the partitions this worker holds, behind the interface of one pipeline."""

    def __init__(
        self,
        *,
        link: NatsLink,
        bucket: str,
        worker: str,
        lease_s: float,
        build: PartitionBuilder,
        decoder: Decoder,
        counters: Counters,
        store: AlertStore,
    ) -> None:
        self.link = link
        # The leases' own connection and loop: renewals must not wait behind the messages of every
        # partition on the data connection's loop (on a saturated machine they did, for seconds, and
        # partitions were fenced for no reason).
        self.lease_link = NatsLink(dataclasses.replace(link.options, name=f"{link.options.name}-leases"))
        self.worker = worker
        self.counters = counters
        self.store = store
        self.fatal = threading.Event()
        self._build = build
        self._decoder = decoder
        self._lock = threading.Lock()  # _running
        # Starts and stops, one at a time: the fence may stop a partition while it is being started.
        self._changing = threading.Lock()
        self._running: dict[int, Partition] = {}
        self._failed = StageHealth()
        self.keeper = LeaseKeeper(
            self.lease_link,
            bucket,
            worker,
            link.options.partitions,
            lease_s,
            take=self._start_partition,
            release=self._stop_partition,
            before_free=link.flush,
        )
        self._watch_gauges()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.link.start()
        self.lease_link.start()
        self.link.ensure_stream()
        self.keeper.start()
        log.info(
            "worker %s: sharing %d partitions of stream %s with the other workers (leases in %s)",
            self.worker,
            self.link.options.partitions,
            self.link.options.stream,
            self.keeper.bucket,
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every partition (each stores and acknowledges the batch in hand, saves its models and
        flushes its alerts), free their leases, then close the connection."""
        self.keeper.stop()
        self.link.close()
        self.lease_link.close()

    def _start_partition(self, number: int) -> None:
        def make_source(inbound: queue.Queue[Inbound]) -> NatsPartitionSource:
            return NatsPartitionSource(self.link, number, self._decoder, inbound, self.counters)

        with self._changing:
            partition = self._build(number, make_source, self.fatal)
            partition.pipeline.start()
            with self._lock:
                self._running[number] = partition
        log.info("partition %d: started by %s at %.3f", number, self.worker, time.time())

    def _stop_partition(self, number: int) -> None:
        with self._changing:
            self._stop_partition_now(number)

    def _stop_partition_now(self, number: int) -> None:
        with self._lock:
            partition = self._running.pop(number, None)
        if partition is None:
            return
        partition.pipeline.stop()
        if not partition.pipeline.wait_stopped(STOP_TIMEOUT_S):
            self._failed.fatal = f"partition {number} did not stop within {STOP_TIMEOUT_S:g} s"
            self.fatal.set()  # the process exits; the lease expires meanwhile
            raise PartitionStuck(self._failed.fatal)
        try:
            partition.alerts.flush()
        except AlertStoreStopped as exc:
            log.error("partition %d: %s; alert changes held back by write coalescing are lost", number, exc)
        log.info("partition %d: stopped by %s at %.3f", number, self.worker, time.time())

    def partitions(self) -> list[Partition]:
        with self._lock:
            return [self._running[n] for n in sorted(self._running)]

    @property
    def health(self) -> StageHealth:
        """The health of the partition that failed fatally (or an empty one)."""
        for partition in self.partitions():
            if partition.pipeline.health.fatal is not None:
                return partition.pipeline.health
        return self._failed

    def _watch_gauges(self) -> None:
        def total(name: str, combine: Callable[[list[float]], float]) -> Callable[[], float]:
            return lambda: combine([p.pipeline.gauges()[name]() for p in self.partitions()] or [0.0])

        for name, combine in (
            ("plantwatch_unacked_messages", sum),
            ("plantwatch_inbound_queue", sum),
            ("plantwatch_oldest_unwritten_seconds", max),
            ("plantwatch_storage_write_pending_seconds", max),
            ("plantwatch_scoring_backlog", sum),
            ("plantwatch_unscored_batches", sum),
            ("plantwatch_alert_store_failing_seconds", max),
        ):
            self.counters.watch(name, total(name, combine))
        self.counters.watch("plantwatch_partitions_held", lambda: len(self._running))
        self.counters.watch("plantwatch_live_workers", lambda: self.keeper.state.live_workers)

    # -- what the API asks -------------------------------------------------------------------
    def _holding(self, asset: str) -> Pipeline | None:
        for partition in self.partitions():
            if partition.pipeline.knows(asset):
                return partition.pipeline
        return None

    def assets(self, only: str | None = None) -> list[dict[str, Any]]:
        if only is not None:
            pipeline = self._holding(only)
            return pipeline.assets(only) if pipeline is not None else []
        views = [view for p in self.partitions() for view in p.pipeline.assets()]
        return sorted(views, key=lambda view: str(view["asset"]))

    def scores(self, asset: str, since_ns: int | None, limit: int) -> list[dict[str, Any]] | None:
        pipeline = self._holding(asset)
        return pipeline.scores(asset, since_ns, limit) if pipeline is not None else None

    def readings(self, asset: str, since_ns: int | None, limit: int) -> dict[str, Any] | None:
        pipeline = self._holding(asset)
        return pipeline.readings(asset, since_ns, limit) if pipeline is not None else None

    def relearn(self, asset: str, maintenance: bool = False) -> bool:
        pipeline = self._holding(asset)
        return pipeline.relearn(asset, maintenance) if pipeline is not None else False

    def feedback(self, asset: str, verdict: str, start_ns: int, end_ns: int) -> int | None:
        pipeline = self._holding(asset)
        return pipeline.feedback(asset, verdict, start_ns, end_ns) if pipeline is not None else None

    def resolve(self, alert_id: int) -> Alert | None:
        """An operator's resolve, by the alert manager of the partition holding the asset here (None:
        not held by this worker; each partition's manager knows every open alert, but only the holder's
        copy is current)."""
        alert = self.store.get(alert_id)
        if alert is None:
            return None
        for partition in self.partitions():
            if partition.pipeline.knows(alert.asset):
                return partition.alerts.close(alert_id)
        return None

    def maintenance(self) -> list[dict[str, Any]]:
        entries = [entry for p in self.partitions() for entry in p.maintenance.snapshot()]
        return sorted(entries, key=lambda entry: str(entry["asset"]))

    def health_report(self) -> dict[str, Any]:
        reports = [p.pipeline.health_report() for p in self.partitions()]
        connected = self.link.connected.is_set()
        fatal = next((r["fatal"] for r in reports if r["fatal"]), self._failed.fatal)
        state = self.keeper.state
        healthy = connected and fatal is None and all(r["status"] == "ok" for r in reports)
        baselines: dict[str, Any] = {}
        for report in reports:
            baselines.update(report["baselines"])
        return {
            "status": "ok" if healthy else "degraded",
            "mqtt_connected": connected,  # to NATS, which the sensors' MQTT reaches through
            "threads_alive": all(r["threads_alive"] for r in reports),
            "storage_ok": all(r["storage_ok"] for r in reports),
            "storage_write_pending_s": max((r["storage_write_pending_s"] for r in reports), default=0.0),
            "alert_store_ok": all(r["alert_store_ok"] for r in reports),
            "alert_store_failing_s": max((r["alert_store_failing_s"] for r in reports), default=0.0),
            "inbound_queue": sum(r["inbound_queue"] for r in reports),
            "scoring_backlog": sum(r["scoring_backlog"] for r in reports),
            "unscored_batches": sum(r["unscored_batches"] for r in reports),
            "fatal": fatal,
            "detector_errors": sum(r["detector_errors"] for r in reports),
            "assets": sorted(baselines),
            "baselines": dict(sorted(baselines.items())),
            "worker": self.worker,
            "partitions": [p.number for p in self.partitions()],
            "live_workers": state.live_workers,
            "fair_share": state.share,
        }
