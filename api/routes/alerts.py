"""GET /alerts."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import StoreDep
from api.schemas import AlertFilters, AlertOut
from ingest.timestamps import INT64_MAX, INT64_MIN, NS_PER_S, TimeParseError, iso_to_ns

router = APIRouter(tags=["alerts"])

_MAX_EPOCH_S = Decimal(INT64_MAX) / NS_PER_S
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
        try:
            # A naive time is ambiguous across the plant's and the server's zones; refuse to guess.
            ns = iso_to_ns(text, naive_is_utc=False)
        except TimeParseError as exc:
            raise _bad_since(text, _ISO_PROBLEMS[exc.problem]) from None
    # The stores keep int64 nanoseconds (years 1677..2262); larger values would crash the query.
    if not INT64_MIN <= ns <= INT64_MAX:
        raise _bad_since(text, _OUT_OF_RANGE)
    return ns


_ISO_PROBLEMS = {
    "syntax": "expected ISO-8601 (e.g. 2024-05-01T12:00:00Z) or epoch seconds",
    "no_zone": "ISO-8601 timestamps must include a zone, e.g. Z or +02:00",
}


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
    return int(seconds * NS_PER_S)


def _bad_since(text: str, why: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"invalid 'since' value {text!r}: {why}")
