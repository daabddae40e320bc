"""Counting and logging rejected input, shared by the sources (MQTT, NATS)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ingest.messages import DecodeError

if TYPE_CHECKING:  # a type only: the receiver child runs without prometheus_client (~3 MB)
    from telemetry.counters import Counters


def count_reject(counters: Counters, logged: set[str], exc: DecodeError, topic: str, log: logging.Logger) -> None:
    """Count a rejected payload (or part of one) by reason; log the first of each reason (``logged``) on
    the source's ``log``."""
    counters.inc("plantwatch_messages_rejected_total", reason=exc.reason)
    if exc.reason not in logged:
        logged.add(exc.reason)
        log.warning(
            "rejected input on %s: %s (%s); further rejects for this reason are only counted "
            "in plantwatch_messages_rejected_total{reason=%r}",
            topic,
            exc.reason,
            exc.detail,
            exc.reason,
        )
