"""Benchmark metrics for detector output: the SKAB point-wise protocol and NAB scoring.

Pure numpy + standard library. Everything takes the per-row boolean ``anomaly`` flags of a backtest
(``BacktestResult.anomaly``) in file order.

SKAB (Katser & Kozitsin 2020; the ``binary`` metric of SKAB's ``core/metrics.py``):
point-wise confusion counts against the ``anomaly`` column, pooled over files by summing the counts;
F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP).

NAB (Ahmad et al., Neurocomputing 2017; numenta/NAB ``nab/sweeper.py`` and ``nab/runner.py``),
standard profile, re-implemented here from that description:

* Rows are walked in file order. A window covers the rows from the first row stamped with its start
  up to the first row stamped with its end (both inclusive, as NAB's sweeper does).
* The first ``min(floor(0.15 n), 750)`` rows are probationary: never scored, whatever they hold.
* Every row flagged anomalous is a detection. Inside a window only the earliest scored detection
  counts, worth ``A_TP * S(p) / S(-1)`` with ``p = -(end - i + 1) / width`` (``width`` = rows in the
  window), so a detection on the window's first row is worth exactly ``A_TP``, one on its last row
  about ``A_TP * 0.1 / width``. A window without detection costs ``-A_FN``.
* Every detection outside all windows is a false positive worth ``A_FP * S(p)`` with
  ``p = (i - end_prev) / (width_prev - 1)`` relative to the closest preceding window (S is negative
  for p > 0, so FPs just after a window cost little and reach ``-A_FP`` about one window length
  later); an FP with no preceding window costs the full ``-A_FP``.
* ``S(p) = 2 / (1 + exp(5 p)) - 1`` (NAB's ``scaledSigmoid``), and ``-1`` for ``p >= 3``.
* Raw scores are summed over the corpus, then normalised:
  ``100 * (raw - null) / (perfect - null)``, null = the detector that flags nothing
  (``-A_FN`` per scored window), perfect = ``A_TP`` per window.

NAB's published leaderboard optimises each detector's threshold over the corpus and uses all 58
files; a fixed alarm rule scored on a subset is therefore not directly comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detector.alarm import alarm_onsets
from ingest.timestamps import INT64_MAX, INT64_MIN, OUTSIDE_INT64, TimeParseError, iso_to_ns

NS_PER_HOUR = 3_600_000_000_000

# -- SKAB --------------------------------------------------------------------------------------

COUNT_KEYS = ("tp", "fp", "fn", "tn")


def confusion_counts(pred: np.ndarray, label: np.ndarray) -> dict[str, int]:
    """Point-wise TP/FP/FN/TN of boolean ``pred`` against boolean ``label`` (same length)."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(label, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {p.shape}, label {t.shape}")
    return {
        "tp": int(np.sum(p & t)),
        "fp": int(np.sum(p & ~t)),
        "fn": int(np.sum(~p & t)),
        "tn": int(np.sum(~p & ~t)),
    }


def metrics_from_counts(counts: Mapping[str, int]) -> dict[str, Any]:
    """F1, FAR, MAR, precision, recall (fractions, 0.0 for an empty denominator) plus the counts."""
    tp, fp, fn, tn = (int(counts[k]) for k in COUNT_KEYS)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = tp / (tp + 0.5 * (fp + fn)) if tp + fp + fn else 0.0  # = 2PR / (P + R)
    far = fp / (fp + tn) if fp + tn else 0.0
    mar = fn / (fn + tp) if fn + tp else 0.0
    return {
        "f1": f1,
        "far": far,
        "mar": mar,
        "precision": precision,
        "recall": recall,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "rows": tp + fp + fn + tn,
    }


def skab_metrics(pred: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """SKAB point-wise metrics of one file (or of already concatenated rows)."""
    return metrics_from_counts(confusion_counts(pred, label))


def pool_skab(per_file: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Pool per-file results (each with tp/fp/fn/tn) by summing counts, then recompute the metrics."""
    totals = dict.fromkeys(COUNT_KEYS, 0)
    for result in per_file:
        for key in COUNT_KEYS:
            totals[key] += int(result[key])
    return metrics_from_counts(totals)


# -- NAB scoring function ----------------------------------------------------------------------


@dataclass(frozen=True)
class NabProfile:
    """NAB application profile weights (all positive; signs are applied by the scoring rules)."""

    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0
    tn: float = 1.0  # part of NAB's cost matrix; true negatives do not enter the score


NAB_STANDARD = NabProfile()
NAB_PROBATION_FRACTION = 0.15
NAB_PROBATION_CAP = 750  # NAB: 0.15 * 5000


def sigmoid(x: float) -> float:
    """Logistic function, written to avoid overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid: ``2 * sigmoid(-5 * position) - 1``, and -1 from position 3 on.

    -1 (window start) → 0.98661, -0.5 → 0.84828, 0 (window end) → 0, +1 → -0.98661.
    """
    if position >= 3.0:
        return -1.0
    return 2.0 * sigmoid(-5.0 * position) - 1.0


def nab_probation_rows(n_rows: int) -> int:
    """Rows at the start of a file that NAB does not score: ``min(floor(0.15 n), 750)``."""
    return min(math.floor(NAB_PROBATION_FRACTION * n_rows), NAB_PROBATION_CAP)


def nab_tp_weight(row: int, start: int, end: int, profile: NabProfile = NAB_STANDARD) -> float:
    """Score of a first detection at ``row`` of the window of rows ``start..end`` (inclusive)."""
    width = end - start + 1
    position = -(end - row + 1) / width
    return scaled_sigmoid(position) * profile.tp / scaled_sigmoid(-1.0)


def nab_fp_weight(row: int, prev_end: int | None, prev_width: int | None, profile: NabProfile = NAB_STANDARD) -> float:
    """(Negative) score of a false-positive detection at ``row``.

    ``prev_end`` / ``prev_width``: last row and row count of the closest window ending before
    ``row`` (``None``: no such window, full ``-A_FP``). For a one-row window NAB's division by
    ``width - 1`` is undefined; such a window is treated as far away (position 2, as NAB's older
    scorer did).
    """
    if prev_end is None or prev_width is None:
        return -profile.fp
    position = (row - prev_end) / (prev_width - 1) if prev_width > 1 else 2.0
    return scaled_sigmoid(position) * profile.fp


# -- windows -----------------------------------------------------------------------------------


def parse_time_ns(text: str) -> int:
    """``YYYY-MM-DD hh:mm:ss[.ffffff]`` (naive = UTC, as NAB's windows are written) → epoch nanoseconds."""
    try:
        ns = iso_to_ns(text.strip(), naive_is_utc=True)
    except TimeParseError as exc:
        raise ValueError(f"window time {text!r} {exc.why}") from None
    if not INT64_MIN <= ns <= INT64_MAX:
        raise ValueError(f"window time {text!r} {OUTSIDE_INT64}")
    return ns


def window_rows(timestamps_ns: np.ndarray, windows: Sequence[Sequence[str | int]]) -> list[tuple[int, int]]:
    """Row ranges ``(first, last)`` (inclusive) of labelled windows given as (start, end) times.

    Times may be text (NAB's ``combined_windows.json``) or epoch ns. As NAB's sweeper: the window
    starts at the first row stamped exactly ``start`` and ends at the first row stamped exactly
    ``end``. If a stamp is absent, the first row at/after ``start`` and the last row at/before
    ``end`` (in file order) are used. Raises ``ValueError`` if no row falls in a window.
    """
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    out = []
    for start, end in windows:
        t0 = parse_time_ns(start) if isinstance(start, str) else int(start)
        t1 = parse_time_ns(end) if isinstance(end, str) else int(end)
        hits0 = np.flatnonzero(ts == t0)
        hits1 = np.flatnonzero(ts == t1)
        first = int(hits0[0]) if hits0.size else _first(np.flatnonzero(ts >= t0))
        last = int(hits1[0]) if hits1.size else _last(np.flatnonzero(ts <= t1))
        if first < 0 or last < 0 or last < first:
            raise ValueError(f"window [{start}, {end}] contains no row")
        out.append((first, last))
    out.sort()
    for (_, a_end), (b_start, _) in zip(out, out[1:], strict=False):
        if b_start <= a_end:
            raise ValueError("overlapping windows")
    return out


def _first(idx: np.ndarray) -> int:
    return int(idx[0]) if idx.size else -1


def _last(idx: np.ndarray) -> int:
    return int(idx[-1]) if idx.size else -1


def segment_delays(pred: np.ndarray, label: np.ndarray, timestamps_ns: np.ndarray) -> list[float | None]:
    """For each run of labelled rows: seconds from its first row to its first flagged row (None if
    no row of it is flagged). How early a fault is seen, in the plant's own time."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(label, dtype=bool)
    ts = np.asarray(timestamps_ns, dtype=np.int64)
    starts = alarm_onsets(t)
    ends = np.flatnonzero(t & ~np.concatenate((t[1:], [False])))  # last row of each run
    delays: list[float | None] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        hit = np.flatnonzero(p[a : b + 1])
        delays.append(float(ts[a + hit[0]] - ts[a]) / 1e9 if hit.size else None)
    return delays


def delay_summary(delays: Sequence[float | None]) -> dict[str, Any]:
    """``segment_delays`` in brief: segments, how many were flagged, median/min/max delay (s; None
    when none was flagged)."""
    found = [d for d in delays if d is not None]
    return {
        "segments": len(delays),
        "flagged": len(found),
        "median_s": float(np.median(found)) if found else None,
        "min_s": min(found) if found else None,
        "max_s": max(found) if found else None,
    }


# -- NAB per file ------------------------------------------------------------------------------


@dataclass
class NabWindowResult:
    start: int  # first row of the window
    end: int  # last row (inclusive)
    scored: bool  # at least one row after the probationary period
    first_detection: int | None  # row of the earliest scored detection inside the window
    score: float  # TP weight, or -A_FN, or 0.0 for an unscored window
    lead_hours: float | None = None  # window end time - first detection time
    lead_fraction: float | None = None  # lead / window duration: 1 = at the start, 0 = at the end


@dataclass
class NabFileResult:
    rows: int
    probation: int
    windows: list[NabWindowResult]
    tp_score: float
    fn_score: float
    fp_score: float
    fp_rows: int  # scored detections outside every window
    false_alarms: int  # alarm onsets outside every window, after the probationary period
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def raw(self) -> float:
        return self.tp_score + self.fn_score + self.fp_score

    @property
    def windows_scored(self) -> int:
        return sum(w.scored for w in self.windows)

    @property
    def windows_detected(self) -> int:
        return sum(w.first_detection is not None for w in self.windows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "probation": self.probation,
            "raw": self.raw,
            "tp_score": self.tp_score,
            "fn_score": self.fn_score,
            "fp_score": self.fp_score,
            "fp_rows": self.fp_rows,
            "false_alarms": self.false_alarms,
            "windows": [w.__dict__.copy() for w in self.windows],
            **self.extra,
        }


def nab_score_file(
    pred: np.ndarray,
    windows: Sequence[tuple[int, int]],
    *,
    probation: int | None = None,
    timestamps_ns: np.ndarray | None = None,
    profile: NabProfile = NAB_STANDARD,
) -> NabFileResult:
    """NAB raw score and window statistics of one file.

    ``pred``: per-row detections in file order. ``windows``: inclusive row ranges (``window_rows``).
    ``probation``: unscored leading rows (default ``nab_probation_rows(len(pred))``).
    ``timestamps_ns``: needed only for lead times (hours).
    """
    p = np.asarray(pred, dtype=bool)
    n = int(p.size)
    prob = nab_probation_rows(n) if probation is None else int(probation)
    wins = sorted((int(a), int(b)) for a, b in windows)
    inside = np.zeros(n, dtype=bool)
    for a, b in wins:
        if not 0 <= a <= b < n:
            raise ValueError(f"window rows {a}..{b} outside 0..{n - 1}")
        inside[a : b + 1] = True
    scored = np.arange(n) >= prob

    results: list[NabWindowResult] = []
    tp_score = fn_score = 0.0
    for a, b in wins:
        is_scored = b >= prob
        hits = np.flatnonzero(p[a : b + 1] & scored[a : b + 1])
        first = int(a + hits[0]) if hits.size else None
        if not is_scored:
            score = 0.0
        elif first is None:
            score = -profile.fn
            fn_score += score
        else:
            score = nab_tp_weight(first, a, b, profile)
            tp_score += score
        w = NabWindowResult(a, b, is_scored, first, score)
        if first is not None and timestamps_ns is not None:
            ts = np.asarray(timestamps_ns, dtype=np.int64)
            w.lead_hours = float(ts[b] - ts[first]) / NS_PER_HOUR
            duration = float(ts[b] - ts[a])
            w.lead_fraction = float(ts[b] - ts[first]) / duration if duration > 0 else 1.0
        results.append(w)

    fp_idx = np.flatnonzero(p & ~inside & scored)
    fp_score = 0.0
    ends = np.array([b for _, b in wins], dtype=np.int64)
    widths = np.array([b - a + 1 for a, b in wins], dtype=np.int64)
    for i in fp_idx.tolist():
        k = int(np.searchsorted(ends, i, side="left")) - 1  # last window ending before row i
        if k < 0:
            fp_score += nab_fp_weight(i, None, None, profile)
        else:
            fp_score += nab_fp_weight(i, int(ends[k]), int(widths[k]), profile)

    onsets = alarm_onsets(p)
    false_alarms = int(np.sum(~inside[onsets] & scored[onsets])) if onsets.size else 0
    return NabFileResult(n, prob, results, tp_score, fn_score, fp_score, int(fp_idx.size), false_alarms)


def nab_normalised(
    raw_total: float, n_windows: int, n_scored_windows: int | None = None, profile: NabProfile = NAB_STANDARD
) -> float:
    """``100 * (raw - null) / (perfect - null)`` with NAB's null and perfect detectors.

    perfect = ``A_TP * n_windows`` (NAB counts every labelled window); null = ``-A_FN`` per window
    that has scored rows (``n_scored_windows``, default all), which is what a detector that flags
    nothing gets.
    """
    scored = n_windows if n_scored_windows is None else n_scored_windows
    perfect = profile.tp * n_windows
    null = -profile.fn * scored
    if perfect == null:
        raise ValueError("no windows: the NAB score is undefined")
    return 100.0 * (raw_total - null) / (perfect - null)


def nab_corpus(files: Mapping[str, NabFileResult], profile: NabProfile = NAB_STANDARD) -> dict[str, Any]:
    """Corpus summary: summed raw score, normalised score, window recall, FP counts, lead times."""
    raw = sum(f.raw for f in files.values())
    n_windows = sum(len(f.windows) for f in files.values())
    n_scored = sum(f.windows_scored for f in files.values())
    detected = sum(f.windows_detected for f in files.values())
    leads_h = [w.lead_hours for f in files.values() for w in f.windows if w.lead_hours is not None]
    leads_f = [w.lead_fraction for f in files.values() for w in f.windows if w.lead_fraction is not None]
    return {
        "score": nab_normalised(raw, n_windows, n_scored, profile),
        "raw": raw,
        "null_raw": -profile.fn * n_scored,
        "perfect_raw": profile.tp * n_windows,
        "windows": n_windows,
        "windows_scored": n_scored,
        "windows_detected": detected,
        "window_recall": detected / n_windows if n_windows else 0.0,
        "fp_rows": sum(f.fp_rows for f in files.values()),
        "false_alarms": sum(f.false_alarms for f in files.values()),
        "median_lead_hours": float(np.median(leads_h)) if leads_h else None,
        "median_lead_fraction": float(np.median(leads_f)) if leads_f else None,
        "profile": profile.__dict__.copy(),
    }
