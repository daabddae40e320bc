"""POST /assets/{asset}/relearn: forget an asset's learned baseline and learn a new one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import RelearnDep
from api.schemas import RelearnOut

router = APIRouter(tags=["assets"])

MaintenanceParam = Annotated[
    bool,
    Query(description="the asset was overhauled: its health trend and remaining-life history start again too"),
]


@router.post("/assets/{asset}/relearn", response_model=RelearnOut, status_code=status.HTTP_202_ACCEPTED)
def relearn_baseline(asset: str, relearn: RelearnDep, maintenance: MaintenanceParam = False) -> RelearnOut:
    """After maintenance or a deliberate process change the old baseline no longer describes normal
    operation: the asset's monitor forgets it and learns a new one from its next ``baseline_rows``
    rows (no verdicts meanwhile). An open alert resolves once the new baseline judges rows normal.
    With ``?maintenance=true`` the asset's health trend and RUL row history are forgotten as well.
    """
    if not relearn(asset, maintenance):
        raise HTTPException(status_code=404, detail=f"no asset {asset!r}: no readings since the start, no saved model")
    return RelearnOut(asset=asset, status="relearning", maintenance=maintenance)
