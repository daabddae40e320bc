"""GET /healthz: liveness plus whatever the service's health callback reports."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from api.auth import MayRead
from api.deps import HealthDep

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "a part of the service is not ok: its status says which"}})
def healthz(health: HealthDep, may_read: MayRead) -> JSONResponse:
    """Liveness, and what the service reports of its parts; once API keys are in use, a caller
    without a read key gets the status alone (an orchestrator's healthcheck needs no more)."""
    body: dict[str, Any] = {"status": "ok"}
    try:
        if health is not None:
            body.update(health())
    except Exception as exc:  # a crashing probe means unhealthy, not a 500 the orchestrator misreads
        log.exception("health check failed")
        body = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    code = status.HTTP_200_OK if body.get("status") == "ok" else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body if may_read else {"status": body.get("status")}, status_code=code)
