"""Instants given to the API as text: epoch seconds or ISO-8601 with a zone (``since``, ``start``, ``end``)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from fastapi import HTTPException

from ingest.timestamps import INT64_MAX, INT64_MIN, NS_PER_S, TimeParseError, iso_to_ns

_MAX_EPOCH_S = Decimal(INT64_MAX) / NS_PER_S
_OUT_OF_RANGE = "out of range (years 1677-2262)"


def parse_instant(text: str, name: str) -> int:
    """Epoch seconds or zoned ISO-8601 -> epoch nanoseconds; HTTP 422 naming the field ``name`` otherwise."""
    ns = _epoch_seconds_to_ns(text, name)
    if ns is None:
        try:
            # A naive time is ambiguous across the plant's and the server's zones; refuse to guess.
            ns = iso_to_ns(text, naive_is_utc=False)
        except TimeParseError as exc:
            raise _bad(name, text, _ISO_PROBLEMS[exc.problem]) from None
    # The stores keep int64 nanoseconds (years 1677..2262); larger values would crash the query.
    if not INT64_MIN <= ns <= INT64_MAX:
        raise _bad(name, text, _OUT_OF_RANGE)
    return ns


_ISO_PROBLEMS = {
    "syntax": "expected ISO-8601 (e.g. 2024-05-01T12:00:00Z) or epoch seconds",
    "no_zone": "ISO-8601 timestamps must include a zone, e.g. Z or +02:00",
}


def _epoch_seconds_to_ns(text: str, name: str) -> int | None:
    # Decimal, not float: float seconds cannot carry nanoseconds at today's epoch magnitude.
    try:
        seconds = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not seconds.is_finite():
        raise _bad(name, text, "epoch seconds must be a finite number")
    # Range-check before scaling: Decimal("1e999999999") * 1e9 overflows the decimal context.
    if seconds.copy_abs() > _MAX_EPOCH_S:  # copy_abs: abs() would round in the context
        raise _bad(name, text, _OUT_OF_RANGE)
    return int(seconds * NS_PER_S)


def _bad(name: str, text: str, why: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"invalid '{name}' value {text!r}: {why}")
