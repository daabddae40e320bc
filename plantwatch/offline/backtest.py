"""Offline replay of a sensor log through the live detector: scores CSV and point-wise metrics.

The log's rows go through ``AssetMonitor.process_arrays``, the same code the live service's
``observe`` uses, with ``baseline_rows = train_rows``: the first ``train_rows`` rows are learned as
normal (more where the baseline goes on: ``detector.baseline_extensions``) and everything after is
scored causally (a row's output depends only on rows at or before it). With ``running_when`` the
baseline is the first ``train_rows`` rows of running (stopped and settling rows are neither learned
nor scored; the summary counts them). Labels are scored from where the baseline ended.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.alarm import alarm_onsets
from detector.config import MonitorConfig
from detector.detectability import SmallestShifts
from detector.gate import usable_values
from detector.monitor import NOT_RUNNING, SCORED, SETTLING, SKIPPED, STOPPED, WARMING_UP, AssetMonitor, ScoredRows
from detector.types import Explanation
from ingest.logfile import SensorLog, read_sensor_log
from plantwatch.offline import pictures
from plantwatch.offline.evaluation import segment_delays
from plantwatch.offline.verdict_labels import VerdictPeriod, label_rows

# Settings that apply only live: a log's rows are already aligned, so staleness and sensor discovery
# never apply (and baseline_rows is replaced by train_rows).
LIVE_ONLY = ("max_staleness_ns", "discovery_ns")
CHUNK_ROWS = 50_000  # rows scored per call: a progress step, large enough to keep the batch path fast

MonitorFactory = Callable[[Sequence[str], int], AssetMonitor]

# The scores CSV's ``status`` column, by row status.
STATUS_TEXT = {WARMING_UP: "baseline", SCORED: "scored", SKIPPED: "skipped", STOPPED: "stopped", SETTLING: "settling"}


@dataclass(frozen=True)
class BacktestResult:
    """One entry per input row, in input order."""

    timestamp_text: list[str]
    timestamps_ns: np.ndarray  # int64
    score: np.ndarray  # float64; 0 during warm-up, NaN for skipped, stopped and settling rows
    probability: np.ndarray  # float64; same conventions as score
    anomaly: np.ndarray  # bool; False during warm-up and on stopped or settling rows, held on skipped rows
    status: np.ndarray  # int8: detector.monitor.WARMING_UP / SCORED / SKIPPED / STOPPED / SETTLING
    train_rows: int
    # Row index -> top contributing sensors and whether the row lies at an operating point the baseline
    # never covered, for anomalous rows (only when asked for: it costs time).
    explanations: dict[int, Explanation] = field(default_factory=dict)
    # Sensors whose level wandered over the baseline: judged by how they move only (see detector.baseline).
    drifting_sensors: tuple[str, ...] = ()
    # AssetMonitor.baseline_advice(): set when the alarm level rests on too few baseline scores, or on one episode.
    baseline_advice: str | None = None
    # Set when no baseline was learned (every row is warm-up): why, and what to change.
    no_baseline: str | None = None
    # How often the baseline went on for another train_rows rows: it saw a sensor move one way only.
    baseline_extensions: int = 0
    # The calibrated probability the alarm entered at (AssetMonitor.alarm_enter).
    alarm_enter: float | None = None
    # At the end of the log: the smallest settled shift of each sensor's level the alarm flags.
    smallest_shifts: SmallestShifts | None = None
    # Of the skipped rows, those stamped before an earlier row (a log out of time order).
    late_rows: int = 0

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @property
    def baseline_end(self) -> int:
        """The first row after the baseline's last row: ``train_rows`` unless the baseline went on
        (``baseline_extensions``) or left stopped rows out (``running_when``); 0 with no baseline rows."""
        warming = np.flatnonzero(self.status == WARMING_UP)
        return int(warming[-1]) + 1 if warming.size else 0


def run_backtest(
    log: SensorLog,
    *,
    train_rows: int,
    config: MonitorConfig | None = None,
    monitor_factory: MonitorFactory | None = None,
    explain: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Score every row of ``log`` with a fresh monitor whose baseline is the first ``train_rows`` rows.

    ``progress(rows, total)`` is called after each chunk with the rows it scored and the log's rows
    (a CLI progress bar).

    ``config``: the live service's settings (``DetectorSettings.as_config()``; the defaults when
    None), with ``baseline_rows`` replaced by ``train_rows``. ``monitor_factory(sensors,
    baseline_rows)`` replaces the default monitor (then ``config`` is not used); it must return a
    fresh ``AssetMonitor``.
    """
    if train_rows < 1:
        raise ValueError(f"train_rows must be >= 1, got {train_rows}")
    if config is not None and not isinstance(config, MonitorConfig):
        raise TypeError(f"config must be a MonitorConfig (DetectorSettings.as_config()), got {type(config).__name__}")
    if monitor_factory is None:
        base = config if config is not None else MonitorConfig()

        def monitor_factory(sensors: Sequence[str], baseline_rows: int) -> AssetMonitor:
            return AssetMonitor("backtest", dataclasses.replace(base, baseline_rows=baseline_rows), sensors)

    monitor = monitor_factory(log.sensors, train_rows)
    out, explanations = _score_in_chunks(monitor, log, explain, progress)
    return BacktestResult(
        timestamp_text=log.timestamp_text,
        timestamps_ns=out.ts_ns,
        score=out.score,
        probability=out.probability,
        anomaly=out.anomaly,
        status=out.status,
        train_rows=train_rows,
        explanations=explanations,
        drifting_sensors=monitor.drifting_sensors,
        baseline_advice=monitor.baseline_advice(),
        no_baseline=None if monitor.is_warm else _no_baseline(log, monitor, train_rows, out.status),
        baseline_extensions=monitor.baseline_extensions_ if monitor.is_warm else monitor.baseline_.extensions,
        alarm_enter=monitor.alarm_enter if monitor.is_warm else None,
        smallest_shifts=monitor.smallest_shifts(),
        late_rows=monitor.late_rows_,
    )


def _score_in_chunks(
    monitor: AssetMonitor, log: SensorLog, explain: bool, progress: Callable[[int, int], None] | None
) -> tuple[ScoredRows, dict[int, Explanation]]:
    """The monitor's rows for the whole log, scored ``CHUNK_ROWS`` at a time: the monitor is
    batch-invariant (the live service feeds it any batch size), so the chunks change no result,
    and a progress bar moves while a big log is scored."""
    parts, explanations = [], {}
    for start in range(0, max(len(log), 1), CHUNK_ROWS):
        ts, X = log.timestamps_ns[start : start + CHUNK_ROWS], log.values[start : start + CHUNK_ROWS]
        if explain:
            out, why = monitor.process_explained(ts, X)
            explanations.update({start + row: reason for row, reason in why.items()})
        else:
            out = monitor.process_arrays(ts, X)
        parts.append(out)
        if progress is not None:
            progress(len(ts), len(log))
    if len(parts) == 1:
        return parts[0], explanations
    columns = [np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(ScoredRows)]
    return ScoredRows(*columns), explanations


def backtest_settings(config: MonitorConfig | None, train_rows: int) -> dict[str, Any]:
    """The settings a backtest runs with, as plain values (without those that apply only live)."""
    values = dataclasses.replace(config or MonitorConfig(), baseline_rows=train_rows).as_dict()
    return {key: value for key, value in values.items() if key not in LIVE_ONLY}


def write_explanations(path: str | Path, result: BacktestResult) -> None:
    """JSON lines, one per anomalous row: its time, score, probability, whether it lies at an operating
    point the baseline never covered (``detector.operating_point``) and its top contributing sensors
    (share, direction, dominant feature, value, expected range, whether the value is inside it) —
    what an alert would say."""
    with open(path, "w", encoding="utf-8") as fh:
        for row, why in sorted(result.explanations.items()):
            record = {
                "timestamp": result.timestamp_text[row],
                "score": float(result.score[row]),
                "probability": float(result.probability[row]),
                "unseen_operating_point": why.unseen_operating_point,
                "sensors": [{**dataclasses.asdict(c), "within_expected": c.within_expected} for c in why.contributions],
            }
            fh.write(json.dumps(record) + "\n")


def write_scores_csv(path: str | Path, result: BacktestResult) -> None:
    """``timestamp,score,probability,anomaly,status``: one line per input row, input order.

    ``timestamp`` is the original text. A scored row has its score, its calibrated probability in
    [0, 1] and ``anomaly`` 0/1. The rest were not scored, and say so with empty fields rather than
    with numbers a reader would take for a quiet row: a baseline (warm-up) row has all three empty;
    a skipped row (a missing or non-finite sensor value) has score and probability empty and the
    alarm state held from the row before (an open alarm stays open over a gap in the data); a
    stopped or settling row (``running_when``, ``settle_s``) has them empty and ``anomaly`` 0.
    ``status`` says which: baseline, scored, skipped, stopped or settling (``STATUS_TEXT``).
    """
    scored = (result.status == SCORED).tolist()
    warming_up = (result.status == WARMING_UP).tolist()
    # Shortest round-trip text: probabilities next to 1.0 stay distinct (0.9999999999...).
    score = [repr(v) if ok else "" for v, ok in zip(result.score.tolist(), scored, strict=True)]
    probability = [repr(v) if ok else "" for v, ok in zip(result.probability.tolist(), scored, strict=True)]
    anomaly = ["" if warm else str(int(a)) for a, warm in zip(result.anomaly.tolist(), warming_up, strict=True)]
    status = [STATUS_TEXT[s] for s in result.status.tolist()]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("timestamp", "score", "probability", "anomaly", "status"))
        writer.writerows(zip(result.timestamp_text, score, probability, anomaly, status, strict=True))


def combine_labels(labels: np.ndarray | Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
    """One boolean label per row: the logical OR of every label column (non-zero, non-NaN = 1)."""
    if isinstance(labels, Mapping):
        columns = list(labels.values())
    elif isinstance(labels, np.ndarray):
        columns = [labels]
    else:
        columns = list(labels)
    if not columns:
        raise ValueError("no label columns given")
    stacked = np.vstack([np.asarray(c, dtype=np.float64) for c in columns])
    return (np.nan_to_num(stacked, nan=0.0) != 0).any(axis=0)


def pointwise_metrics(
    anomaly: np.ndarray,
    labels: np.ndarray | Mapping[str, np.ndarray] | Sequence[np.ndarray],
    *,
    start: int = 0,
) -> dict[str, float | int]:
    """Row-by-row precision, recall and F1 of ``anomaly`` against ``labels`` from row ``start`` on.

    Several label columns are OR-ed (a row is anomalous if any column says so). Precision/recall/F1
    are 0.0 when their denominator is 0 (no alarms / no positive labels).
    """
    pred = np.asarray(anomaly, dtype=bool)[start:]
    truth = combine_labels(labels)[start:]
    if pred.shape != truth.shape:
        raise ValueError(f"anomaly has {pred.size} rows from start, labels {truth.size}")
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    tn = int(np.sum(~pred & ~truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


VERDICT_LABEL = "operators' true_fault"  # the label column --labels adds


def backtest_main(
    log_path: str | Path,
    out_path: str | Path,
    train_rows: int,
    label_columns: Sequence[str] = (),
    time_column: str | None = None,
    config: MonitorConfig | None = None,
    explain_path: str | Path | None = None,
    include: Sequence[str] = (),
    verdicts: Sequence[VerdictPeriod] = (),
    progress: Callable[[int, int], None] | None = None,
    plot_path: str | Path | None = None,
    html_path: str | Path | None = None,
) -> dict[str, Any]:
    """Read a log, score it, write the scores CSV; return a summary (metrics when labels are given).

    Columns named like labels but not declared are left out (``summary["left_out"]``) unless in ``include``.
    ``verdicts``: operators' verdicts on the asset's alerts (:mod:`plantwatch.offline.verdict_labels`),
    one more label column: the rows in a true_fault period.

    ``config`` is the live service's (``DetectorSettings.as_config()``); its ``baseline_rows`` is
    replaced by ``train_rows`` and staleness does not apply offline. ``plot_path`` / ``html_path``:
    the backtest's picture as PNG / one HTML page (:mod:`plantwatch.offline.pictures`; matplotlib).
    """
    started = time.perf_counter()
    log = read_sensor_log(log_path, time_column=time_column, label_columns=label_columns, include=include)
    if verdicts:
        log.labels[VERDICT_LABEL] = label_rows(log.timestamps_ns, verdicts)
    read_s = time.perf_counter() - started
    explain = explain_path is not None or plot_path is not None or html_path is not None  # pictures name sensors
    result = run_backtest(log, train_rows=train_rows, config=config, explain=explain, progress=progress)
    if result.no_baseline is not None:  # a score file of warm-up zeros would pass for a quiet asset
        raise ValueError(f"{log_path}: {result.no_baseline}")
    scored_from = max(train_rows, result.baseline_end)
    write_scores_csv(out_path, result)
    if explain_path is not None:
        write_explanations(explain_path, result)
    elapsed = time.perf_counter() - started  # the pictures' time is their own, not the scoring rate's
    truth = combine_labels(log.labels) if log.labels else None
    if plot_path is not None or html_path is not None:
        _draw(log, result, truth, log_path, plot_path, html_path)
    summary: dict[str, Any] = {
        "log": str(log_path),
        "out": str(out_path),
        "rows": len(log),
        "sensors": list(log.sensors),
        "left_out": list(log.left_out),
        "train_rows": train_rows,
        "baseline_extensions": result.baseline_extensions,
        # Where judging starts: after the rows the baseline learned from, which may run past train_rows
        # (it went on, or stopped or skipped rows lay in it).
        "scored_from": scored_from,
        "warming_up_rows": int(np.sum(result.status == WARMING_UP)),
        "scored_rows": int(np.sum(result.status == SCORED)),
        "skipped_rows": int(np.sum(result.status == SKIPPED)),
        "late_rows": result.late_rows,
        "stopped_rows": int(np.sum(result.status == STOPPED)),
        "settling_rows": int(np.sum(result.status == SETTLING)),
        "anomalous_rows": int(np.sum(result.anomaly)),
        "alerts": int(alarm_onsets(result.anomaly).size),
        "alarm_enter": result.alarm_enter,
        "smallest_shifts": result.smallest_shifts.as_dict() if result.smallest_shifts is not None else None,
        "drifting_sensors": list(result.drifting_sensors),
        "baseline_advice": result.baseline_advice,
        "settings": backtest_settings(config, train_rows),
        "read_seconds": read_s,
        "seconds": elapsed,
        "rows_per_second": len(log) / elapsed if elapsed > 0 else float("inf"),
    }
    if truth is not None:
        # The labels are scored over the rows the model judged. Labelled rows inside a baseline that went
        # on were learned as normal, not judged: counted apart, so they can be seen.
        summary["metrics"] = pointwise_metrics(result.anomaly, truth, start=scored_from)
        learned = result.status[train_rows:scored_from] == WARMING_UP  # not stopped, settling or skipped ones
        summary["labelled_in_baseline"] = int(np.sum(truth[train_rows:scored_from] & learned))
        after = slice(scored_from, None)
        summary["segment_delays_s"] = segment_delays(result.anomaly[after], truth[after], result.timestamps_ns[after])
    return summary


def _draw(
    log: SensorLog,
    result: BacktestResult,
    truth: np.ndarray | None,
    log_path: str | Path,
    png: str | Path | None,
    page: str | Path | None,
) -> None:
    name = Path(log_path).name
    learned = int(np.sum(result.status == WARMING_UP))
    words = baseline_words(result.train_rows, learned, result.baseline_extensions)
    figure = pictures.draw(log, result, truth, f"{name}: backtest, {words}")
    if png is not None:
        pictures.write_png(png, figure)
    if page is not None:
        pictures.write_html(page, figure, result, f"{name}: backtest")


def baseline_words(train_rows: int, learned_rows: int, extensions: int) -> str:
    """How many rows the baseline learned from, and why more than ``--train-rows``: the summary line's
    and the picture's words."""
    if not extensions:
        return f"{train_rows} baseline rows"
    times = "once" if extensions == 1 else f"{extensions} times"
    return f"{learned_rows} baseline rows: --train-rows {train_rows} went on {times}, a sensor moved one way only"


def _no_baseline(log: SensorLog, monitor: AssetMonitor, train_rows: int, status: np.ndarray) -> str:
    """Why a backtest learned no baseline, and what to change (a score file of zeros would say nothing)."""
    failure = monitor.baseline_failure_
    if failure is not None:
        return f"no baseline could be learned ({failure.cause}); check the detector settings and --train-rows"
    cells = usable_values(log.values)
    usable = int(cells.all(axis=1).sum())
    empty = [name for name, column in zip(log.sensors, cells.T, strict=True) if not column.any()]
    hint = f"; these columns hold no usable number: {', '.join(empty)}" if empty else ""
    late = (
        f", {monitor.late_rows_} of those are stamped before an earlier row and were skipped (sort the log by time)"
        if monitor.late_rows_
        else ""
    )
    not_running = int(np.isin(status, NOT_RUNNING).sum())
    stopped = (
        f", on {not_running} of them the asset was stopped or settling after a start (running_when, settle_s)"
        if not_running
        else ""
    )
    return (
        f"no baseline learned: {usable} of the log's {len(log)} rows have a number in every sensor column{late}"
        f"{stopped}; the baseline needs {_needed(monitor, train_rows)}{hint}"
    )


def _needed(monitor: AssetMonitor, train_rows: int) -> str:
    extended = monitor.baseline_.extensions
    if not extended:
        return f"{train_rows} (--train-rows)"
    return (
        f"{monitor.baseline_.size}: {train_rows} (--train-rows), extended {extended} "
        f"{'time' if extended == 1 else 'times'} because a sensor moved one way only "
        "(detector.baseline_extensions: 0 learns after --train-rows)"
    )
