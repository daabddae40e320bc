"""GET /alerts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import KEY_RESPONSES, READ
from api.deps import StoreDep
from api.instants import parse_instant
from api.schemas import AlertFilters, AlertOut

router = APIRouter(tags=["alerts"])


@router.get("/alerts", response_model=list[AlertOut], dependencies=[READ], responses=KEY_RESPONSES)
def list_alerts(store: StoreDep, filters: Annotated[AlertFilters, Query()]) -> list[AlertOut]:
    # Sync handler on purpose: the store blocks, so FastAPI runs this in its threadpool.
    # `since` is parsed here, not in the model, so its 422 keeps the one-line detail it always had.
    since_ns = None if filters.since is None else parse_instant(filters.since, "since")
    alerts = store.list(
        asset=filters.asset, state=filters.state, kind=filters.kind, since_ns=since_ns, limit=filters.limit
    )
    return [AlertOut.from_alert(a) for a in alerts]
