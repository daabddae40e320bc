"""GET /assets, GET /assets/{asset}: each asset's state, baseline, latest verdict and model.
GET /assets/{asset}/scores: its recent scored rows, for charts; /readings: their sensors' values.
POST /assets/{asset}/relearn: forget an asset's learned baseline and learn a new one.
POST /assets/{asset}/feedback: an operator's verdict on the asset's alert rows in a period."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.auth import ADMIN, CHANGE_RESPONSES, JSON_REQUEST, KEY_RESPONSES, OPERATE, READ, asset_name
from api.deps import AssetsDep, FeedbackDep, ReadingsDep, RelearnDep, ScoresDep
from api.instants import parse_instant
from api.schemas import AssetOut, FeedbackIn, FeedbackOut, ReadingsOut, RelearnOut, ScoresOut

router = APIRouter(tags=["assets"])

AssetName = Annotated[str, Depends(asset_name)]

MaintenanceParam = Annotated[
    bool,
    Query(description="the asset was overhauled: its health trend and remaining-life history start again too"),
]


@router.get("/assets", response_model=list[AssetOut], dependencies=[READ], responses=KEY_RESPONSES)
def list_assets(assets: AssetsDep) -> list[AssetOut]:
    """Every asset that sent readings since the service started, by name: ``state`` (``learning`` its
    baseline, ``normal``, ``alarm``, or ``stopped`` by its running rule), baseline progress, the alarm
    level, its latest row's time and probability, what drives it while in alarm, and its model."""
    return [AssetOut.from_view(view) for view in assets(None)]


@router.get(
    "/assets/{asset}",
    response_model=AssetOut,
    dependencies=[READ],
    responses=KEY_RESPONSES | {404: {"description": "no readings of this asset since the service started"}},
)
def get_asset(asset: AssetName, assets: AssetsDep) -> AssetOut:
    """One asset, as ``GET /assets`` lists it."""
    found = assets(asset)
    if not found:
        raise HTTPException(status_code=404, detail=f"no asset {asset!r}: no readings since the service started")
    return AssetOut.from_view(found[0])


@router.get(
    "/assets/{asset}/scores",
    response_model=ScoresOut,
    dependencies=[READ],
    responses=KEY_RESPONSES | {404: {"description": "no readings of this asset since the service started"}},
)
def asset_scores(
    asset: AssetName,
    scores: ScoresDep,
    since: Annotated[str | None, Query(description="rows stamped at or after this instant (event time)")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="at most the newest this many rows")] = 3600,
) -> ScoresOut:
    """The asset's scored rows of the last hour or so (the newest 3,600 are kept per asset), oldest
    first: ``score`` (higher is more anomalous), the calibrated ``probability`` its alarm compares
    with ``alarm_enter`` (``GET /assets/{asset}``), and whether the row was ``anomaly``. A baseline's
    rows and a stopped asset's are not scored; a relearn starts the history again."""
    since_ns = None if since is None else parse_instant(since, "since")
    points = scores(asset, since_ns, limit)
    if points is None:
        raise HTTPException(status_code=404, detail=f"no asset {asset!r}: no readings since the service started")
    return ScoresOut.from_points(asset, points)


@router.get(
    "/assets/{asset}/readings",
    response_model=ReadingsOut,
    dependencies=[READ],
    responses=KEY_RESPONSES | {404: {"description": "no readings of this asset since the service started"}},
)
def asset_readings(
    asset: AssetName,
    readings: ReadingsDep,
    since: Annotated[str | None, Query(description="rows stamped at or after this instant (event time)")] = None,
    limit: Annotated[int, Query(ge=1, le=720, description="at most the newest this many rows")] = 720,
) -> ReadingsOut:
    """The asset's newest aligned rows (720 are kept per asset), oldest first: each sensor's value, in
    the order ``sensors`` names, as the detector saw them. For charts beside ``/scores``; the time
    series database holds them all. A relearn, or a new set of sensors, starts them again."""
    since_ns = None if since is None else parse_instant(since, "since")
    rows = readings(asset, since_ns, limit)
    if rows is None:
        raise HTTPException(status_code=404, detail=f"no asset {asset!r}: no readings since the service started")
    return ReadingsOut.from_rows(asset, rows)


@router.post(
    "/assets/{asset}/relearn",
    response_model=RelearnOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[ADMIN, JSON_REQUEST],
    responses=CHANGE_RESPONSES | {404: {"description": "no such asset: no readings since the start, no saved model"}},
)
def relearn_baseline(asset: AssetName, relearn: RelearnDep, maintenance: MaintenanceParam = False) -> RelearnOut:
    """After maintenance or a deliberate process change the old baseline no longer describes normal
    operation: the asset's monitor forgets it and learns a new one from its next ``baseline_rows``
    rows (no verdicts meanwhile). An open alert resolves once the new baseline judges rows normal.
    With ``?maintenance=true`` the asset's health trend and RUL row history are forgotten as well.
    """
    if not relearn(asset, maintenance):
        raise HTTPException(status_code=404, detail=f"no asset {asset!r}: no readings since the start, no saved model")
    return RelearnOut(asset=asset, status="relearning", maintenance=maintenance)


@router.post(
    "/assets/{asset}/feedback",
    response_model=FeedbackOut,
    dependencies=[OPERATE, JSON_REQUEST],
    responses=CHANGE_RESPONSES
    | {
        404: {"description": "no such asset: no readings since the start, no saved model"},
        409: {"description": "the asset has no learned baseline, or its model was saved before feedback was kept"},
        503: {"description": "the detector did not answer in time, or the API key file cannot be read"},
    },
)
def alert_feedback(asset: AssetName, body: FeedbackIn, feedback: FeedbackDep) -> FeedbackOut:
    """``false_alarm``: the asset's alert rows stamped from ``start`` to ``end`` were normal running the
    baseline never showed. They are learned as normal (the model is refitted with them and the alarm
    level raised above them), so the same behaviour does not alert again; a fault elsewhere still
    does. ``true_fault``: those rows were a fault and are never learned. ``rows`` says how many of the
    asset's recent alert rows (one baseline length is kept) lay in the period; 0 changes nothing.
    """
    start_ns, end_ns = parse_instant(body.start, "start"), parse_instant(body.end, "end")
    if end_ns < start_ns:
        raise HTTPException(status_code=422, detail="end: before start")
    try:
        rows = feedback(asset, body.verdict, start_ns, end_ns)
    except ValueError as exc:  # no learned baseline, or a model saved before feedback was kept
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except TimeoutError:
        raise HTTPException(status_code=503, detail="the detector did not answer in time; try again") from None
    if rows is None:
        raise HTTPException(status_code=404, detail=f"no asset {asset!r}: no readings since the start, no saved model")
    return FeedbackOut(asset=asset, verdict=body.verdict, rows=rows)
