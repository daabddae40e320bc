"""MQTT payload decoding: one message's topic and payload to :class:`~ingest.messages.Decoded` readings.

Pure functions over ``(topic, payload)``: no I/O, no paho, no threads. :meth:`Decoder.decode` runs on
paho's network thread for every message, so the hot path avoids per-call setup (topic templates are
pre-split once, parsers are built once per decoder).

The decoder does what every format shares: the size limit, matching the topic to its
:class:`~ingest.topics.TopicTemplate`, UTF-8, the future-timestamp check and the rejection reasons.
The payload itself goes to the first format of :data:`ingest.formats.FORMATS` that claims it:

* JSON frame ``{"ts": ..., "values": {"<sensor>": <number>, ...}}`` or single value
  ``{"ts": ..., "value": <number>}`` (:mod:`ingest.formats.json`, which documents the ``ts`` rules);
* a bare number such as ``21.5``, the sensor from the topic (:mod:`ingest.formats.number`);
* InfluxDB line protocol, one or more lines (:mod:`ingest.formats.line_protocol`).

Every rejection carries one of :data:`REJECTION_REASONS` (stable labels used as Prometheus label
values). Problems confined to one sensor or one line drop just that part and are returned in
:attr:`Decoded.problems`; if nothing usable remains the first problem is raised. With
``max_future_ns`` set, as the service does, readings stamped further ahead of this machine's clock
than that are refused as ``future_timestamp``. With ``limits`` (:class:`~ingest.limits.PublisherLimits`),
as the service has, what survives goes through them last: readings of assets, sensors and tags beyond
them are refused as :data:`~ingest.limits.LIMIT_REASONS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from ingest.formats import FORMATS, ParserContext, PayloadParser
from ingest.formats.base import SHARED_REASONS
from ingest.limits import LIMIT_REASONS, PublisherLimits
from ingest.messages import Decoded, DecodeError, short
from ingest.timestamps import ns_to_iso
from ingest.topics import TopicTemplate

__all__ = ["REJECTION_REASONS", "Decoder", "rejection_reasons"]

_ENVELOPE_REASONS = ("oversized", "bad_encoding", "unknown_topic")


def rejection_reasons(formats: Iterable[type[PayloadParser]]) -> tuple[str, ...]:
    """Every reason a decoder with these formats can reject a message (or part of one) for."""
    own = tuple(reason for parser in formats for reason in parser.reasons)
    return (*_ENVELOPE_REASONS, *own, *SHARED_REASONS, "future_timestamp", *LIMIT_REASONS)


REJECTION_REASONS: tuple[str, ...] = rejection_reasons(FORMATS.values())


class Decoder:
    """Turns one MQTT message into :class:`Decoded` readings (see the module docstring for formats)."""

    __slots__ = ("template", "max_payload_bytes", "max_future_ns", "limits", "_now_ns", "_parsers")

    def __init__(
        self,
        template: TopicTemplate | str,
        *,
        max_payload_bytes: int = 65536,
        max_future_ns: int | None = None,
        now_ns: Callable[[], int] = time.time_ns,
        formats: Sequence[type[PayloadParser]] | None = None,
        payload_tags: bool = False,
        limits: PublisherLimits | None = None,
    ) -> None:
        """``formats``: the parsers to try, in order (default: :data:`ingest.formats.FORMATS`); the last
        should claim every payload the others leave, as line protocol does, or those are ``no_values``.
        ``payload_tags``: take the asset and tags a payload carries (line protocol) over the topic's.
        ``limits``: what publishers may create (assets, sensors, tags); the decoder then admits what it
        decodes through them, so it keeps their state: one decoder per subscriber thread."""
        self.template = template if isinstance(template, TopicTemplate) else TopicTemplate(template)
        self.max_payload_bytes = max_payload_bytes
        # Readings stamped further ahead of this machine's clock are refused: one glitched stamp
        # would otherwise make every later reading of its asset "late" for the detector.
        self.max_future_ns = max_future_ns
        self.limits = limits
        self._now_ns = now_ns
        context = ParserContext(self.template, now_ns, payload_tags)
        parsers = [parser(context) for parser in (FORMATS.values() if formats is None else formats)]
        self._parsers = tuple((parser.claims, parser.parse) for parser in parsers)  # bound once: per-message path

    def decode(self, topic: str, payload: bytes) -> Decoded:
        """Decode one message; DecodeError(reason, detail) when nothing usable is in it."""
        if len(payload) > self.max_payload_bytes:
            raise DecodeError("oversized", f"{len(payload)} bytes > max_payload_bytes={self.max_payload_bytes}")
        asset, sensor, tags = self.template.parse(topic)
        try:
            text = str(payload, "utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("bad_encoding", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        text = text.strip()
        if not text:
            raise DecodeError("no_values", "empty payload")
        for claims, parse in self._parsers:
            if claims(text):
                decoded = parse(text, asset, sensor, tags)
                if self.max_future_ns is not None:
                    decoded = self._drop_future(decoded, self.max_future_ns)
                # Last, so a reading refused for anything else takes no asset, sensor or tag slot.
                return decoded if self.limits is None else self.limits.admit(decoded)
        raise DecodeError("no_values", f"payload {short(text)} is in none of the formats this decoder reads")

    def _drop_future(self, decoded: Decoded, max_future_ns: int) -> Decoded:
        """Readings stamped more than ``max_future_ns`` ahead of the clock become ``future_timestamp`` problems."""
        now = self._now_ns()
        limit = now + max_future_ns
        if all(reading.ts_ns <= limit for reading in decoded.readings):
            return decoded
        kept = tuple(reading for reading in decoded.readings if reading.ts_ns <= limit)
        problems = tuple(
            DecodeError(
                "future_timestamp",
                f"ts {ns_to_iso(reading.ts_ns)} is {(reading.ts_ns - now) / 1e9:.0f} s ahead of this machine's "
                f"clock (max_future_s={max_future_ns / 1e9:g}); check the sender's clock",
            )
            for reading in decoded.readings
            if reading.ts_ns > limit
        )
        if not kept:
            raise problems[0]
        return Decoded(kept, decoded.problems + problems)
