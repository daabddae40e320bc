"""What a shift does with an alert: POST /alerts/{id}/ack, /resolve, /shelve, /unshelve, /comment, /feedback.

Each action is recorded in the alert's history with the caller's key name and the wall-clock time,
and answers with the alert and its history. The lifecycle owns the alert's condition (open while
anomalous, resolved once normal), but an operator may close it by hand (``/resolve``), through the
lifecycle, which then stops tracking it; operators own acknowledgement and shelving, in columns the
lifecycle never writes, so neither undoes the other.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, HTTPException

from alerts.model import (
    ACKNOWLEDGED,
    COMMENTED,
    RESOLVED_BY_OPERATOR,
    SHELVED,
    STATE_OPEN,
    STATE_RESOLVED,
    UNSHELVED,
    VERDICTS,
    Alert,
    AlertAction,
)
from alerts.store import AlertStore
from api.auth import CHANGE_RESPONSES, JSON_REQUEST, OPERATE
from api.deps import FeedbackDep, ResolveDep, StoreDep
from api.hooks import Feedback
from api.instants import parse_instant
from api.keys import ApiKey
from api.routes.alerts import AlertId, detail, known, no_alert
from api.schemas import (
    AcknowledgeIn,
    AlertDetailOut,
    AlertFeedbackIn,
    AlertFeedbackOut,
    CommentIn,
    ShelveIn,
    UnshelveIn,
)

router = APIRouter(tags=["alerts"])

Operator = Annotated[ApiKey | None, OPERATE]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
MAX_SHELVE_NS = 30 * 24 * 3600 * 10**9
ACTION_RESPONSES = CHANGE_RESPONSES | {
    404: {"description": "no alert with this id"},
    409: {"description": "already acknowledged, already resolved, or not shelved"},
}


def _action(path: str) -> Callable[[Endpoint], Endpoint]:
    """The route of one action: JSON only, answered with the alert and its history."""
    return router.post(path, response_model=AlertDetailOut, dependencies=[JSON_REQUEST], responses=ACTION_RESPONSES)


def _record(store: AlertStore, action: AlertAction, shelved_reason: str | None = None) -> AlertDetailOut:
    alert = store.act(action, shelved_reason)
    if alert is None:
        raise no_alert(action.alert_id)
    return detail(store, alert)


def _actor(key: ApiKey | None) -> str:
    return key.name if key is not None else "anonymous"


@_action("/alerts/{alert_id}/ack")
def acknowledge(
    alert_id: AlertId, store: StoreDep, key: Operator, body: Annotated[AcknowledgeIn | None, Body()] = None
) -> AlertDetailOut:
    """Acknowledge an alert: someone has seen it. An alert that resolved by itself stays to be
    acknowledged (``needs_acknowledgement``) until it is, as ISA-18.2 asks of a return to normal."""
    alert = known(store, alert_id)
    if alert.acknowledged_at_ns is not None:
        by = alert.acknowledged_by
        raise HTTPException(status_code=409, detail=f"alert {alert_id} was acknowledged already, by {by}")
    return _record(
        store, AlertAction(alert_id, time.time_ns(), _actor(key), ACKNOWLEDGED, body.comment if body else None)
    )


@_action("/alerts/{alert_id}/resolve")
def resolve(
    alert_id: AlertId,
    store: StoreDep,
    close: ResolveDep,
    key: Operator,
    body: Annotated[AcknowledgeIn | None, Body()] = None,
) -> AlertDetailOut:
    """Close an open alert by hand (the fault was fixed, or it is known and dealt with): it is stored
    resolved at its last anomalous row, and the asset's next anomalous row opens a new alert. The
    body (``comment``) may be left out; resolving does not acknowledge."""
    alert = known(store, alert_id)
    if alert.state != STATE_OPEN:
        raise HTTPException(status_code=409, detail=f"alert {alert_id} is resolved already")
    if close(alert_id) is None:  # not tracked by a running lifecycle: the store alone holds it
        store.update(dataclasses.replace(alert, state=STATE_RESOLVED, resolved_at_ns=alert.last_anomalous_at_ns))
    action = AlertAction(alert_id, time.time_ns(), _actor(key), RESOLVED_BY_OPERATOR, body.comment if body else None)
    return _record(store, action)


@_action("/alerts/{alert_id}/shelve")
def shelve(alert_id: AlertId, body: ShelveIn, store: StoreDep, key: Operator) -> AlertDetailOut:
    """Silence an alert for ``hours`` or until ``until`` (at most 30 days), with a reason: it shows
    ``shelved`` until then. Shelving again replaces the time."""
    now = time.time_ns()
    if (body.hours is None) == (body.until is None):
        raise HTTPException(status_code=422, detail="give exactly one of hours and until")
    until = now + round(body.hours * 3600e9) if body.hours is not None else parse_instant(str(body.until), "until")
    if not now < until <= now + MAX_SHELVE_NS:
        raise HTTPException(status_code=422, detail="until: must lie in the next 30 days")
    known(store, alert_id)
    action = AlertAction(alert_id, now, _actor(key), SHELVED, body.reason, shelved_until_ns=until)
    return _record(store, action, shelved_reason=body.reason)


@_action("/alerts/{alert_id}/unshelve")
def unshelve(
    alert_id: AlertId, store: StoreDep, key: Operator, body: Annotated[UnshelveIn | None, Body()] = None
) -> AlertDetailOut:
    """End a shelving before its time."""
    now = time.time_ns()
    if not known(store, alert_id).shelved(now):
        raise HTTPException(status_code=409, detail=f"alert {alert_id} is not shelved")
    return _record(store, AlertAction(alert_id, now, _actor(key), UNSHELVED, body.comment if body else None))


@_action("/alerts/{alert_id}/comment")
def comment(alert_id: AlertId, body: CommentIn, store: StoreDep, key: Operator) -> AlertDetailOut:
    """Add a note to the alert's history (what was found, who was called)."""
    return _record(store, AlertAction(alert_id, time.time_ns(), _actor(key), COMMENTED, body.comment))


@router.post(
    "/alerts/{alert_id}/feedback",
    response_model=AlertFeedbackOut,
    dependencies=[JSON_REQUEST],
    responses=ACTION_RESPONSES,
)
def alert_feedback(
    alert_id: AlertId, body: AlertFeedbackIn, store: StoreDep, feedback: FeedbackDep, key: Operator
) -> AlertFeedbackOut:
    """The operator's verdict on the alert, recorded in its history and handed to the detector over the
    alert's rows (its start to its last anomalous row): ``false_alarm`` rows are learned as normal, so
    the same behaviour does not alert again; ``true_fault`` rows are never learned; ``known_cause``
    (real, of a benign cause such as a cleaning cycle) is recorded only. The verdict is recorded even
    when the detector cannot take it (the asset relearned since, say): ``detector`` says why."""
    rows, said = _offer_verdict(feedback, known(store, alert_id), body.verdict)
    action = AlertAction(alert_id, time.time_ns(), _actor(key), VERDICTS[body.verdict], body.comment)
    recorded = _record(store, action)
    return AlertFeedbackOut(**recorded.model_dump(), rows=rows, detector=said)


def _offer_verdict(feedback: Feedback, alert: Alert, verdict: str) -> tuple[int, str]:
    """``(rows, what the detector did)`` with a verdict over the alert's rows (503 when it did not answer)."""
    if verdict == "known_cause":
        return 0, "recorded only: a known cause is neither learned nor barred from learning"
    try:
        rows = feedback(alert.asset, verdict, alert.started_at_ns, alert.last_anomalous_at_ns)
    except ValueError as exc:
        return 0, f"not applied: {exc}"
    except TimeoutError:
        raise HTTPException(status_code=503, detail="the detector did not answer in time; try again") from None
    if rows is None:
        return 0, f"not applied: the detector knows no asset {alert.asset!r} now"
    if rows == 0:  # marked before, or older than the rows the detector keeps
        return 0, (
            "no alert rows changed: the detector keeps one baseline length of the asset's alert rows, and "
            "those in this alert's span were marked already or are no longer kept"
        )
    return rows, f"{rows} alert rows learned as normal" if verdict == "false_alarm" else f"{rows} alert rows barred"
