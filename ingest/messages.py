"""Typed messages passed between the ingest stages (frozen, small, cheap to copy)."""

from __future__ import annotations

import queue
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reading:
    """Values of one asset's sensors at one instant, as decoded from one MQTT message.

    ``ts_ns`` is the reading's own time (UTC epoch nanoseconds), never the arrival time unless the
    payload carried none. ``tags`` are the topic-template segments other than asset and sensor.
    """

    asset: str
    ts_ns: int
    values: Mapping[str, float]
    tags: Mapping[str, str] = field(default_factory=dict)

    def __reduce__(self) -> tuple[type[Reading], tuple[str, int, Mapping[str, float], Mapping[str, str]]]:
        # Pickled by the receiver child for every delivery: as the constructor's arguments, 3x faster
        # to pickle and 2x to unpickle than a frozen slots dataclass's default (its setstate walks
        # ``fields()`` for every object).
        return Reading, (self.asset, self.ts_ns, self.values, self.tags)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one MQTT message decoded to: its readings, plus per-sensor (or per-line) problems that
    were dropped without invalidating the rest of the message (they are counted, not dead-lettered).
    """

    readings: tuple[Reading, ...]
    problems: tuple[DecodeError, ...]


@dataclass(frozen=True, slots=True)
class Inbound:
    """What the MQTT callback hands to the writer: decoded readings plus the handle to ack them.

    ``mid`` is paho's message id for ``client.ack``; ``None`` for QoS 0 deliveries (nothing to ack).
    ``received_ns`` is ``time.monotonic_ns()`` at receipt (``plantwatch_oldest_unwritten_seconds``).
    """

    readings: tuple[Reading, ...]
    mid: int | None
    qos: int = 1
    received_ns: int = 0

    def __reduce__(self) -> tuple[type[Inbound], tuple[tuple[Reading, ...], int | None, int, int]]:
        return Inbound, (self.readings, self.mid, self.qos, self.received_ns)  # as Reading's


def inbound_queue(max_in_flight: int) -> queue.Queue[Inbound]:
    """The queue a source hands its deliveries to: larger than the in-flight cap, at which the source
    waits, so only QoS 0 floods ever wait here."""
    return queue.Queue(maxsize=max_in_flight * 2 + 16)


def short(value: object, limit: int = 60) -> str:
    """repr() cut to ``limit`` chars for error details: they end up in logs and dead letters; payloads reach 64 KiB."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DecodeError(ValueError):
    """Raised by the decoder; ``reason`` is a short stable label used for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
