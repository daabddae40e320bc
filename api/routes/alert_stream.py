"""GET /alerts/stream: alerts that changed, pushed as Server-Sent Events.

Each event is one alert as ``GET /alerts`` shows it, sent after it opens, changes, resolves, or an
operator acts on it (``event: alert``, ``id:`` its place in the order of changes); changes of one
alert between two reads of the store arrive as one event with its latest state. A client that
reconnects sends the last id it saw (``Last-Event-ID``, as browsers' ``EventSource`` do by
themselves) and gets every alert changed since, none twice; a new client gets the changes from now on, or
since ``updated_since``. The stream reads the store's ``updated_at`` order (what ``updated_since``
polling reads) once a second, so it sees every writer, and a comment line every 15 seconds keeps
proxies from closing a quiet stream. The format is a few text lines, written here rather than
through a library.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from alerts.store import AlertStore
from api.auth import KEY_RESPONSES, READ
from api.deps import StoreDep
from api.instants import parse_instant
from api.routes.alerts import changed_after, cursor_after, parse_cursor
from api.schemas import AlertOut

router = APIRouter(tags=["alerts"])

POLL_S = 1.0  # how often the store is read for changes
HEARTBEAT_S = 15.0  # a comment line after this long without an event
BATCH = 500  # changes read per poll


@router.get(
    "/alerts/stream",
    dependencies=[READ],
    response_class=StreamingResponse,
    responses=KEY_RESPONSES | {200: {"content": {"text/event-stream": {}}, "description": "alert changes"}},
)
def alert_stream(
    store: StoreDep,
    last_event_id: Annotated[str | None, Header(description="the id of the last event seen: resume after it")] = None,
    updated_since: Annotated[str | None, Query(description="start with the changes since this instant")] = None,
) -> StreamingResponse:
    """Alert changes as Server-Sent Events (see the module docstring)."""
    after = None if last_event_id is None else parse_cursor(last_event_id, "u", "Last-Event-ID")
    if after is not None:
        since_ns = after[0]
    elif updated_since is not None:
        since_ns = parse_instant(updated_since, "updated_since")
    else:
        since_ns = time.time_ns()
    if since_ns < 0:
        raise HTTPException(status_code=422, detail="updated_since: before 1970")
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy may hold events back
    return StreamingResponse(_events(store, since_ns, after), media_type="text/event-stream", headers=headers)


async def _events(store: AlertStore, since_ns: int, after: tuple[int, int] | None) -> AsyncIterator[str]:
    quiet_since = time.monotonic()
    yield ": plantwatch alert stream\n\n"  # sent at once: the client knows it is connected
    while True:
        changed = []
        if await changed_after(store, after or (since_ns, 0)):
            changed = await run_in_threadpool(store.list, updated_since_ns=since_ns, after=after, limit=BATCH)
        for alert in changed:
            assert alert.updated_at_ns is not None and alert.id is not None  # every stored alert has both
            after = (alert.updated_at_ns, alert.id)
            data = AlertOut.from_alert(alert).model_dump_json()
            yield f"id: {cursor_after(alert, 'u')}\nevent: alert\ndata: {data}\n\n"
        if changed:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= HEARTBEAT_S:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        if len(changed) < BATCH:
            await asyncio.sleep(POLL_S)
