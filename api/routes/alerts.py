"""GET /alerts, GET /alerts/{id} (with its history)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response

from alerts.store import AlertStore
from api.auth import KEY_RESPONSES, READ
from api.deps import StoreDep
from api.instants import parse_instant
from api.schemas import AlertActionOut, AlertDetailOut, AlertFilters, AlertOut
from ingest.timestamps import ns_to_datetime

router = APIRouter(tags=["alerts"])


@router.get("/alerts", response_model=list[AlertOut], dependencies=[READ], responses=KEY_RESPONSES)
def list_alerts(store: StoreDep, filters: Annotated[AlertFilters, Query()], response: Response) -> list[AlertOut]:
    """Newest first; with ``updated_since``, what changed since, oldest change first. A full page
    (``limit`` alerts) carries the header ``X-Next-Cursor``: pass it as ``cursor`` for the next one."""
    # Sync handler on purpose: the store blocks, so FastAPI runs this in its threadpool.
    # `since` is parsed here, not in the model, so its 422 keeps the one-line detail it always had.
    since_ns = None if filters.since is None else parse_instant(filters.since, "since")
    updated_ns = None if filters.updated_since is None else parse_instant(filters.updated_since, "updated_since")
    order = "u" if updated_ns is not None else "s"
    alerts = store.list(
        asset=filters.asset,
        state=filters.state,
        kind=filters.kind,
        since_ns=since_ns,
        limit=filters.limit,
        acknowledged=filters.acknowledged,
        updated_since_ns=updated_ns,
        after=None if filters.cursor is None else parse_cursor(filters.cursor, order, "cursor"),
    )
    if len(alerts) == filters.limit:
        last = alerts[-1]
        key = last.updated_at_ns if order == "u" else last.started_at_ns
        response.headers["X-Next-Cursor"] = f"{order}{key}.{last.id}"
    return [AlertOut.from_alert(a) for a in alerts]


def parse_cursor(cursor: str, order: str, name: str) -> tuple[int, int]:
    """``s<started_at_ns>.<id>`` (newest first) or ``u<updated_at_ns>.<id>`` (changes, oldest first):
    where a page, or an event stream, ended. 422 naming ``name`` for anything else."""
    key, _, alert_id = cursor[1:].partition(".")
    if cursor[:1] != order or not key.isdigit() or not alert_id.isdigit() or len(cursor) > 64:
        raise HTTPException(status_code=422, detail=f"{name}: not a place in this order of alerts")
    return int(key), int(alert_id)


# Alert ids are the store's row ids: BIGSERIAL in PostgreSQL, so larger ones cannot exist (a 422, not a
# database error, for an id beyond it).
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the alert's id, as GET /alerts gives it")]


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertDetailOut,
    dependencies=[READ],
    responses=KEY_RESPONSES | {404: {"description": "no alert with this id"}},
)
def get_alert(alert_id: AlertId, store: StoreDep) -> AlertDetailOut:
    """One alert, as ``GET /alerts`` lists it, with its history: a poller that kept an id reads its
    current state."""
    return detail(store, alert_id)


def detail(store: AlertStore, alert_id: int) -> AlertDetailOut:
    """The alert and its operators' history (404 for an unknown id)."""
    alert = store.get(alert_id)
    if alert is None:
        raise HTTPException(status_code=404, detail=f"no alert with id {alert_id}")
    history = [
        AlertActionOut(
            at=ns_to_datetime(a.at_ns),
            actor=a.actor,
            action=a.action,
            comment=a.comment,
            shelved_until=None if a.shelved_until_ns is None else ns_to_datetime(a.shelved_until_ns),
        )
        for a in store.history(alert_id)
    ]
    return AlertDetailOut(**AlertOut.from_alert(alert).model_dump(), history=history)
