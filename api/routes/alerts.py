"""GET /alerts, GET /alerts/{id} (with its history)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from alerts.model import Alert
from alerts.store import AlertStore
from api.auth import KEY_RESPONSES, READ
from api.deps import StoreDep
from api.instants import parse_instant
from api.schemas import AlertActionOut, AlertDetailOut, AlertFilters, AlertOut
from ingest.timestamps import INT64_MAX, ns_to_datetime

router = APIRouter(tags=["alerts"])


@router.get("/alerts", response_model=list[AlertOut], dependencies=[READ], responses=KEY_RESPONSES)
async def list_alerts(store: StoreDep, filters: Annotated[AlertFilters, Query()], response: Response) -> list[AlertOut]:
    """Newest first; with ``updated_since``, what changed since, oldest change first. A full page
    (``limit`` alerts) carries the header ``X-Next-Cursor``: pass it as ``cursor`` for the next one.
    In the order of changes every answer carries it, where the answer ended: a poller passes it alone
    as ``cursor`` the next time and gets only what changed after the last change it saw."""
    # The store blocks, so it runs in the thread pool: one hop, the rest (parsing, the models) here.
    # The instants are parsed here, not in the model, so a 422 keeps the one-line detail it always had,
    # and before the probe, so a bad one is refused whether or not anything changed.
    since_ns = None if filters.since is None else parse_instant(filters.since, "since")
    updated_ns = None if filters.updated_since is None else parse_instant(filters.updated_since, "updated_since")
    until_ns = None if filters.until is None else parse_instant(filters.until, "until")
    changes = updated_ns is not None or (filters.cursor or "").startswith("u")
    order = "u" if changes else "s"
    after = None if filters.cursor is None else parse_cursor(filters.cursor, order, "cursor")
    if changes and updated_ns is None:
        assert after is not None  # a "u" cursor
        updated_ns = after[0]
    if updated_ns is not None:
        updated_ns = max(updated_ns, 0)  # no change is stamped before 1970, and the cursor must parse
    alerts: list[Alert] = []
    # An up-to-date poller, the usual case, is answered by a probe (the page's filters only narrow).
    if updated_ns is None or await changed_after(store, after or (updated_ns, 0)):
        alerts = await run_in_threadpool(
            store.list,
            asset=filters.asset,
            state=filters.state,
            kind=filters.kind,
            since_ns=since_ns,
            limit=filters.limit,
            acknowledged=filters.acknowledged,
            updated_since_ns=updated_ns,
            after=after,
            severity=filters.severity,
            until_ns=until_ns,
            tag=None if filters.tag is None else _name_value(filters.tag),
        )
    if alerts and (changes or len(alerts) == filters.limit):
        response.headers["X-Next-Cursor"] = cursor_after(alerts[-1], order)
    elif changes:  # nothing changed: the same place again (a place before every change at updated_since)
        response.headers["X-Next-Cursor"] = filters.cursor or f"u{updated_ns}.0"
    return [AlertOut.from_alert(a) for a in alerts]


async def changed_after(store: AlertStore, after: tuple[int, int]) -> bool:
    """``store.changed_after``, on the event loop when the store's reads are local. Most polls find
    nothing new, and a thread-pool hop cost more than the probe: measured with bench/polling_cost.py,
    whose poller competes for the GIL with the pipeline's threads at every hop."""
    if store.reads_are_local:
        return store.changed_after(after)
    return await run_in_threadpool(store.changed_after, after)


def _name_value(tag: str) -> tuple[str, str]:
    name, _, value = tag.partition(":")
    return name, value


def cursor_after(alert: Alert, order: str) -> str:
    """Where a page (``order`` ``s``) or an event stream (``u``) ended: at ``alert``; read by :func:`parse_cursor`."""
    key = alert.updated_at_ns if order == "u" else alert.started_at_ns
    return f"{order}{key}.{alert.id}"


def parse_cursor(cursor: str, order: str, name: str) -> tuple[int, int]:
    """``s<started_at_ns>.<id>`` (newest first) or ``u<updated_at_ns>.<id>`` (changes, oldest first):
    where a page, or an event stream, ended. 422 naming ``name`` for anything else."""
    key, _, alert_id = cursor[1:].partition(".")
    digits = key.isascii() and key.isdigit() and alert_id.isascii() and alert_id.isdigit()  # not '²'
    if cursor[:1] != order or not digits or len(cursor) > 64 or max(int(key), int(alert_id)) > INT64_MAX:
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
    return detail(store, known(store, alert_id))


def known(store: AlertStore, alert_id: int) -> Alert:
    """The stored alert with this id (404 for an unknown one)."""
    alert = store.get(alert_id)
    if alert is None:
        raise no_alert(alert_id)
    return alert


def no_alert(alert_id: int) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no alert with id {alert_id}")


def detail(store: AlertStore, alert: Alert) -> AlertDetailOut:
    """A stored alert with its operators' history."""
    assert alert.id is not None  # only stored alerts are served
    history = [
        AlertActionOut(
            at=ns_to_datetime(a.at_ns),
            actor=a.actor,
            action=a.action,
            comment=a.comment,
            shelved_until=None if a.shelved_until_ns is None else ns_to_datetime(a.shelved_until_ns),
        )
        for a in store.history(alert.id)
    ]
    return AlertDetailOut(**AlertOut.from_alert(alert).model_dump(), history=history)
