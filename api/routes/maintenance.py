"""GET /maintenance: per-asset health index, trend and projected time to the maintenance threshold."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import KEY_RESPONSES, READ
from api.deps import MaintenanceDep
from api.schemas import MaintenanceOut

router = APIRouter(tags=["maintenance"])


@router.get("/maintenance", response_model=list[MaintenanceOut], dependencies=[READ], responses=KEY_RESPONSES)
def list_maintenance(maintenance: MaintenanceDep) -> list[MaintenanceOut]:
    return [MaintenanceOut.model_validate(entry) for entry in maintenance()]
