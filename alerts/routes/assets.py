"""POST /assets/{asset}/relearn: forget an asset's learned baseline and learn a new one."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from alerts.routes.deps import RelearnDep
from alerts.schemas import RelearnOut

router = APIRouter(tags=["assets"])


@router.post("/assets/{asset}/relearn", response_model=RelearnOut, status_code=status.HTTP_202_ACCEPTED)
def relearn_baseline(asset: str, relearn: RelearnDep) -> RelearnOut:
    """After maintenance or a deliberate process change the old baseline no longer describes normal
    operation: the asset's monitor forgets it and learns a new one from its next ``baseline_rows``
    rows (no verdicts meanwhile). An open alert resolves once the new baseline judges rows normal.
    """
    if not relearn(asset):
        raise HTTPException(status_code=404, detail=f"no asset {asset!r} has sent readings to this service")
    return RelearnOut(asset=asset, status="relearning")
