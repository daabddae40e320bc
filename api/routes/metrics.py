"""GET /metrics in the Prometheus text exposition format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.auth import KEY_RESPONSES, READ
from api.deps import CountersDep

router = APIRouter(tags=["metrics"])

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[READ], responses=KEY_RESPONSES)
def metrics(counters: CountersDep) -> PlainTextResponse:
    return PlainTextResponse(counters.render(), media_type=PROMETHEUS_CONTENT_TYPE)
