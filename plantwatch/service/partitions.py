"""Partition ownership among the workers of a site: a lease per partition in a JetStream KV bucket.

Each key ``p<N>`` of the bucket holds the worker that owns partition N (or nothing: free); each key
``w.<worker>`` is a worker's heartbeat. Every ``lease_s / 3`` a worker (:class:`LeaseKeeper`):

1. reads every key and notes, on its own monotonic clock, when each key's revision last changed;
2. writes its heartbeat, and renews each lease it holds by compare-and-set on the revision it wrote
   last: a renewal refused because the revision moved means another worker took the partition, and
   the partition is stopped at once;
   (renewals run every ``lease_s / 6`` on a thread of their own, so a slow round delays none);
3. stops a partition whose lease it has not renewed for ``lease_s / 2`` (NATS unreachable): the
   other workers cannot take it before it has gone ``lease_s`` unchanged, counted from when they
   read it, which is after this worker sent it, so the holder has stopped first (*fencing by
   time*; it assumes clocks that run at about the same rate, not synchronised ones);
4. counts the live workers (heartbeats that changed within ``lease_s``, itself included) and its fair
   share, ``ceil(partitions / live)``: above it, it stops the partitions it has too many of and then
   frees their leases; below it, it takes free leases, and leases unchanged for ``lease_s`` (their
   holder is dead), each by compare-and-set, starting the partition only once the set succeeded.

A partition is therefore run by one worker at a time: taken only from a free lease (its previous
holder stopped it before freeing it) or an expired one (its holder stopped it, or died), and by one
taker (compare-and-set). A new worker waits one round before it takes anything, so that workers
started together see each other before they share.

nats-server 2.9 has neither per-key TTL nor pinned consumers, hence the revision-watching.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ingest.nats_source import NatsLink

log = logging.getLogger(__name__)

FENCE_FRACTION = 0.5  # a holder stops a partition it could not renew for this fraction of lease_s
FENCE_CHECK_S = 0.2
FREE = b""
CALL_TIMEOUT_S = 2.0  # one KV call; the rounds go on without it


def worker_key(worker: str) -> str:
    return f"w.{re.sub(r'[^-_a-zA-Z0-9]', '_', worker)}"


def lease_key(partition: int) -> str:
    return f"p{partition}"


@dataclass
class _Seen:
    revision: int
    changed_at: float  # time.monotonic() when this worker first saw that revision


@dataclass
class _Held:
    revision: int  # the revision of our last successful write
    renewed_at: float  # time.monotonic() just before that write was sent


@dataclass
class LeaseState:
    """What the keeper knows, for /healthz and the tests."""

    held: set[int] = field(default_factory=set)
    live_workers: int = 1
    share: int = 0


class LeaseKeeper:
    """Takes, renews and gives up partition leases; ``take(p)`` / ``release(p)`` start and stop them.

    ``release`` must return only once the partition has stopped (its last batch stored and
    acknowledged): the lease is freed after it.
    """

    def __init__(
        self,
        link: NatsLink,
        bucket: str,
        worker: str,
        partitions: int,
        lease_s: float,
        take: Callable[[int], None],
        release: Callable[[int], None],
        before_free: Callable[[], None] = lambda: None,
    ) -> None:
        """``link``: a connection of the leases' own, so that their calls never queue behind the
        partitions' messages on a busy machine; ``before_free``: flushes the partitions' connection (their
        acknowledgements reach the server before a lease is freed)."""
        self.link = link
        self._before_free = before_free
        self.bucket = bucket
        self.worker = worker
        self.partitions = partitions
        self.lease_s = lease_s
        self.beat_s = lease_s / 3
        self.fence_s = lease_s * FENCE_FRACTION
        self._timeout = min(CALL_TIMEOUT_S, self.beat_s)
        self._take = take
        self._release = release
        self._kv: KeyValue | None = None
        self._seen: dict[str, _Seen] = {}
        self._held: dict[int, _Held] = {}
        self._started_at = 0.0
        self._lock = threading.Lock()  # _held: the rounds' thread and the fence's thread
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.state = LeaseState()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._kv = self.link.call(self._open_bucket())
        self._started_at = time.monotonic()
        for name, target in (
            ("plantwatch-leases", self._run),
            ("plantwatch-lease-renewal", self._run_renewals),
            ("plantwatch-lease-fence", self._watch_fence),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    async def _open_bucket(self) -> KeyValue:
        # history 1: only the latest value matters; create is idempotent for the same configuration.
        return await self.link.js.create_key_value(bucket=self.bucket, history=1)

    def stop(self) -> None:
        """Stop every partition held, free its lease, and remove the heartbeat."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.beat_s + 30)
        for partition in sorted(self._held):
            self._give_up(partition)
        try:
            self.link.call(self.kv.delete(worker_key(self.worker)))
        except Exception as exc:  # noqa: BLE001 - the others see the heartbeat age instead
            log.warning("could not remove the heartbeat of %s: %s", self.worker, exc)

    @property
    def kv(self) -> KeyValue:
        assert self._kv is not None, "LeaseKeeper.start() first"
        return self._kv

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.round()
            except Exception:  # one bad round must not end ownership management
                log.exception("lease round failed")
            self._stop.wait(max(self.beat_s - (time.monotonic() - started), 0.05))

    def _run_renewals(self) -> None:
        """Apart from the rounds, twice per round: a slow round (reading every key, starting or stopping a
        partition) must not let the leases held go stale."""
        while not self._stop.wait(self.beat_s / 2):
            try:
                self._renew()
            except Exception:
                log.exception("lease renewal failed")

    def _watch_fence(self) -> None:
        """Apart from the rounds, which can wait on an unreachable server for a while."""
        while not self._stop.wait(FENCE_CHECK_S):
            self._fence(time.monotonic())

    # -- one round -----------------------------------------------------------------------------
    def round(self) -> None:
        now = time.monotonic()
        try:
            entries = self.link.call(self._read_all(), self.beat_s)
        except Exception as exc:  # noqa: BLE001 - unreachable: fence what we cannot renew
            log.warning("cannot read the leases in %s: %s", self.bucket, exc)
            self._fence(now)
            return
        # After the read: a revision written while it was on its way is dated no earlier than it was sent.
        self._observe(entries, time.monotonic())
        self._beat()
        self._fence(time.monotonic())
        live = self._live_workers(now)
        share = math.ceil(self.partitions / live)
        self.state.live_workers, self.state.share = live, share
        if now - self._started_at < self.beat_s * 0.99:
            return  # the first round only looks: workers started together see each other first
        if len(self._held) > share:
            for partition in sorted(self._held, reverse=True)[: len(self._held) - share]:
                self._give_up(partition)
        elif len(self._held) < share:
            self._take_more(entries, share, now)
        self.state.held = set(self._held)

    async def _read_all(self) -> dict[str, tuple[bytes, int]]:
        # The stream's subjects list the keys in one request (KeyValue.keys() runs a watcher, slow under load).
        prefix = f"$KV.{self.bucket}."
        info = await self.link.js.stream_info(f"KV_{self.bucket}", subjects_filter=f"{prefix}>")
        keys = [subject[len(prefix) :] for subject in (info.state.subjects or {})]
        entries: dict[str, tuple[bytes, int]] = {}
        for key in keys:
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:  # deleted meanwhile (KeyDeletedError is one)
                continue
            entries[key] = (entry.value or FREE, entry.revision or 0)
        return entries

    def _observe(self, entries: dict[str, tuple[bytes, int]], now: float) -> None:
        for key, (_, revision) in entries.items():
            seen = self._seen.get(key)
            if seen is None or seen.revision != revision:
                self._seen[key] = _Seen(revision, now)
        for key in set(self._seen) - set(entries):
            del self._seen[key]

    def _beat(self) -> None:
        body = json.dumps({"worker": self.worker, "held": sorted(self._held)}).encode()
        try:
            self.link.call(self.kv.put(worker_key(self.worker), body), self._timeout)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("heartbeat of %s failed: %s", self.worker, exc)

    def _renew(self) -> None:
        """Compare-and-set each lease held on the revision this worker wrote last."""
        with self._lock:
            held_now = dict(self._held)
        for partition, held in held_now.items():
            sent_at = time.monotonic()
            try:
                revision = self.link.call(
                    self.kv.update(lease_key(partition), self._body(), last=held.revision), self._timeout
                )
            except KeyWrongLastSequenceError:
                self._lost(partition, "another worker changed its lease")
                continue
            except Exception as exc:  # noqa: BLE001 - fenced if it lasts
                log.warning("renewing the lease of partition %d failed: %s", partition, exc)
                continue
            with self._lock:
                if partition in self._held:  # not fenced meanwhile
                    self._held[partition] = _Held(revision, sent_at)

    def _fence(self, now: float) -> None:
        with self._lock:
            late = [(p, now - h.renewed_at) for p, h in self._held.items() if now - h.renewed_at > self.fence_s]
        for partition, age in late:
            self._lost(partition, f"its lease was not renewed for {age:.1f} s")

    def _lost(self, partition: int, why: str) -> None:
        with self._lock:
            if self._held.pop(partition, None) is None:
                return  # stopped by the other thread already
        log.error("partition %d: stopping it here: %s", partition, why)
        try:
            self._release(partition)
        except Exception:
            log.exception("partition %d: could not stop it", partition)

    def _live_workers(self, now: float) -> int:
        me = worker_key(self.worker)
        others = {
            key
            for key, seen in self._seen.items()
            if key.startswith("w.") and key != me and now - seen.changed_at < self.lease_s
        }
        return 1 + len(others)

    def _take_more(self, entries: dict[str, tuple[bytes, int]], share: int, now: float) -> None:
        for partition in self._order():
            if len(self._held) >= share:
                return
            if partition in self._held:
                continue
            key = lease_key(partition)
            current = entries.get(key)
            if current is not None and current[0] != FREE:
                seen = self._seen.get(key)
                if seen is None or now - seen.changed_at < self.lease_s:
                    continue  # held by a live worker (or not watched long enough to tell)
            sent_at = time.monotonic()
            try:
                if current is None:
                    revision = self.link.call(self.kv.create(key, self._body()), self._timeout)
                else:
                    revision = self.link.call(self.kv.update(key, self._body(), last=current[1]), self._timeout)
            except KeyWrongLastSequenceError:
                continue  # another worker was quicker
            except Exception as exc:  # noqa: BLE001 - next round
                log.warning("taking the lease of partition %d failed: %s", partition, exc)
                continue
            previous = json.loads(current[0]).get("worker") if current is not None and current[0] else None
            log.info(
                "partition %d: lease taken by %s (%s)",
                partition,
                self.worker,
                f"expired, held by {previous}" if previous else "free",
            )
            with self._lock:
                self._held[partition] = _Held(revision, sent_at)
            try:
                self._take(partition)
            except Exception:
                log.exception("partition %d: could not start it; freeing its lease", partition)
                self._give_up(partition)

    def _order(self) -> list[int]:
        """Partitions in this worker's order of preference (rendezvous hashing, so that the same
        worker tends to get the same partitions back)."""
        return sorted(range(self.partitions), key=lambda p: zlib.crc32(f"{self.worker}/{p}".encode()))

    def _give_up(self, partition: int) -> None:
        with self._lock:
            held = self._held.pop(partition, None)
        if held is None:
            return  # fenced by the other thread meanwhile
        try:
            self._release(partition)  # returns once the partition has stopped (or was not started)
        except Exception:
            log.exception("partition %d: not stopped, so its lease is not freed (it expires)", partition)
            return
        try:
            self._before_free()
            # The renewals may have moved the revision since: free it if it is still ours.
            entry = self.link.call(self.kv.get(lease_key(partition)), self._timeout)
            if json.loads(entry.value or b"{}").get("worker") != self.worker:
                log.warning("partition %d: its lease is no longer %s's; not freeing it", partition, self.worker)
                return
            self.link.call(self.kv.update(lease_key(partition), FREE, last=entry.revision), self._timeout)
            log.info("partition %d: lease freed by %s", partition, self.worker)
        except Exception as exc:  # noqa: BLE001 - it expires after lease_s instead
            log.warning(
                "partition %d: could not free its lease (it expires in %.0f s): %s", partition, self.lease_s, exc
            )

    def _body(self) -> bytes:
        return json.dumps({"worker": self.worker}).encode()
