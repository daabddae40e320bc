"""GET /alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import StoreDep
from api.schemas import AlertFilters, AlertOut

router = APIRouter(tags=["alerts"])

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_EPOCH_S = Decimal(_INT64_MAX) / 1_000_000_000
_OUT_OF_RANGE = "out of range (years 1677-2262)"


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(store: StoreDep, filters: Annotated[AlertFilters, Query()]) -> list[AlertOut]:
    # Sync handler on purpose: the store blocks, so FastAPI runs this in its threadpool.
    # `since` is parsed here, not in the model, so its 422 keeps the one-line detail it always had.
    since_ns = None if filters.since is None else parse_since(filters.since)
    alerts = store.list(
        asset=filters.asset, state=filters.state, kind=filters.kind, since_ns=since_ns, limit=filters.limit
    )
    return [AlertOut.from_alert(a) for a in alerts]


def parse_since(text: str) -> int:
    """Epoch seconds or zoned ISO-8601 -> epoch nanoseconds; HTTP 422 for anything else."""
    ns = _epoch_seconds_to_ns(text)
    if ns is None:
        ns = _iso_to_ns(text)
    # The stores keep int64 nanoseconds (years 1677..2262); larger values would crash the query.
    if not _INT64_MIN <= ns <= _INT64_MAX:
        raise _bad_since(text, _OUT_OF_RANGE)
    return ns


def _iso_to_ns(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad_since(text, "expected ISO-8601 (e.g. 2024-05-01T12:00:00Z) or epoch seconds") from None
    if moment.tzinfo is None:
        # A naive time is ambiguous across the plant's and the server's zones; refuse to guess.
        raise _bad_since(text, "ISO-8601 timestamps must include a zone, e.g. Z or +02:00")
    # timedelta arithmetic stays exact; moment.timestamp() would round through a float.
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _epoch_seconds_to_ns(text: str) -> int | None:
    # Decimal, not float: float seconds cannot carry nanoseconds at today's epoch magnitude.
    try:
        seconds = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not seconds.is_finite():
        raise _bad_since(text, "epoch seconds must be a finite number")
    # Range-check before scaling: Decimal("1e999999999") * 1e9 overflows the decimal context.
    if seconds.copy_abs() > _MAX_EPOCH_S:  # copy_abs: abs() would round in the context
        raise _bad_since(text, _OUT_OF_RANGE)
    return int(seconds * 1_000_000_000)


def _bad_since(text: str, why: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"invalid 'since' value {text!r}: {why}")
