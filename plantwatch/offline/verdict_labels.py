"""Operators' verdicts on alerts (``POST /alerts/{id}/feedback``) as labels for ``plantwatch backtest``.

``plantwatch alerts labels`` writes one line per alert with a verdict (its latest, when an operator
changed their mind): ``asset,verdict,start,end,alert_id``, the period the alert's anomalous rows
spanned (its start to its last anomalous row, ISO-8601 UTC). ``plantwatch backtest --labels FILE``
reads it back: the rows of the log's asset stamped inside a ``true_fault`` period are labelled a
fault, every other row normal (``false_alarm`` periods, ``known_cause`` ones and everything no
verdict covers), so a tuned configuration is scored against what the plant's own people said.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alerts.model import VERDICTS
from alerts.store import AlertStore
from ingest.timestamps import iso_to_ns, ns_to_iso

HEADER = ("asset", "verdict", "start", "end", "alert_id")
TRUE_FAULT = "true_fault"
_VERDICT_OF_ACTION = {action: verdict for verdict, action in VERDICTS.items()}


@dataclass(frozen=True, slots=True)
class VerdictPeriod:
    asset: str
    verdict: str  # true_fault, false_alarm or known_cause
    start_ns: int
    end_ns: int
    alert_id: int


def verdict_periods(store: AlertStore, asset: str | None = None) -> list[VerdictPeriod]:
    """Every alert with a verdict (of ``asset``, or every asset), oldest first, with its latest verdict."""
    ids = set().union(*(store.marked(action) for action in VERDICTS.values()))
    periods = []
    for alert_id in sorted(ids):
        alert = store.get(alert_id)
        if alert is None or (asset is not None and alert.asset != asset):
            continue
        latest = [h.action for h in store.history(alert_id) if h.action in _VERDICT_OF_ACTION][-1]
        periods.append(
            VerdictPeriod(
                alert.asset, _VERDICT_OF_ACTION[latest], alert.started_at_ns, alert.last_anomalous_at_ns, alert_id
            )
        )
    return sorted(periods, key=lambda p: (p.start_ns, p.alert_id))


def write_periods(path: str | Path, periods: Sequence[VerdictPeriod]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for p in periods:
            start, end = (ns_to_iso(ns, timespec="microseconds") for ns in (p.start_ns, p.end_ns))
            writer.writerow([p.asset, p.verdict, start, end, p.alert_id])


def read_periods(path: str | Path) -> list[VerdictPeriod]:
    """The periods of a file ``write_periods`` wrote; ValueError naming the file and line for a bad one."""
    with open(path, newline="", encoding="utf-8") as source:
        rows = list(csv.reader(source))
    if not rows or tuple(cell.strip() for cell in rows[0]) != HEADER:
        raise ValueError(f"{path}: the first line must be {','.join(HEADER)} (a file of `plantwatch alerts labels`)")
    periods = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            asset, verdict, start, end, alert_id = row
            if verdict not in VERDICTS:
                raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
            start_ns, end_ns = (iso_to_ns(t, naive_is_utc=True) for t in (start, end))
            if end_ns < start_ns:
                raise ValueError("end before start")
            periods.append(VerdictPeriod(asset, verdict, start_ns, end_ns, int(alert_id)))
        except ValueError as exc:
            raise ValueError(f"{path}, line {line}: {exc}") from None
    return periods


def label_rows(timestamps_ns: np.ndarray, periods: Sequence[VerdictPeriod]) -> np.ndarray:
    """1.0 for each row stamped inside a true_fault period, else 0.0 (a label column as backtest reads one)."""
    labels = np.zeros(timestamps_ns.shape[0], np.float64)
    for p in periods:
        if p.verdict == TRUE_FAULT:  # the file keeps microseconds: the last row's nanoseconds count in
            labels[(timestamps_ns >= p.start_ns) & (timestamps_ns <= p.end_ns + 999)] = 1.0
    return labels
