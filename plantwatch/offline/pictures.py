"""Pictures of offline work: a backtest (``plantwatch backtest --plot out.png`` and ``--html
out.html``) and remaining-life predictions (``plantwatch rul predict --plot out.png``).

One figure, time across: a panel per sensor (its trace, up to ``MAX_SENSORS``, those the alerts name
first), then the anomaly probability on a scale of nines (-log10(1 - p): the calibrated
probabilities that matter lie between 0.99 and 0.999999) with the alarm level. Alerts (each run of
anomalous rows, as an operator is paged) are shaded red on every panel and numbered; labelled
anomalies, when the log has label columns, are shaded in amber below them. The HTML page holds the
same figure and a table of the alerts with their top sensors, in one file that needs no network.

Drawn with matplotlib (a dependency, which PyOD needs too) through its object API (``Figure``): no
global pyplot state, no display.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detector.features import LEVEL_FEATURES
from detector.types import Explanation
from ingest.logfile import SensorLog

if TYPE_CHECKING:  # plantwatch.offline.backtest draws through this module
    from plantwatch.offline.backtest import BacktestResult

MAX_SENSORS = 8  # sensor panels drawn; the alerts' top sensors first, then the log's order
MAX_NINES = 6.0
MAX_CAPTIONS = 8  # alerts whose top sensors are written under the figure


@dataclass(frozen=True)
class AlertSpan:
    """One alert of the backtest: rows ``start`` to ``stop`` (exclusive) anomalous, and why."""

    number: int
    start: int
    stop: int
    peak_probability: float
    why: Explanation | None

    def sensors_text(self, limit: int = 3) -> str:
        if self.why is None or not self.why.contributions:
            return "(no explanation)"
        parts = [
            f"{c.sensor}{_view(c.feature)} {c.direction} ({round(100 * c.share)} %)"
            for c in self.why.contributions[:limit]
        ]
        return ", ".join(parts) + (" (operating point never seen)" if self.why.unseen_operating_point else "")


def _view(feature: str) -> str:
    # "Accelerometer2RMS high" for a vibration that dipped sharply would send the reader looking for a
    # high reading: name the view of the sensor that is off unless it is the reading or its level.
    return "" if feature in ("", *LEVEL_FEATURES) else f" {feature}"


def alert_spans(result: BacktestResult) -> list[AlertSpan]:
    """Each run of anomalous rows, with its peak probability and the explanation of its first explained row."""
    spans = []
    for number, (start, stop) in enumerate(_spans_of(result.anomaly), start=1):
        explained = [row for row in range(start, stop) if row in result.explanations]
        peak = np.nanmax(result.probability[start:stop]) if np.isfinite(result.probability[start:stop]).any() else 0.0
        why = result.explanations[explained[0]] if explained else None
        spans.append(AlertSpan(number, start, stop, float(peak), why))
    return spans


def _spans_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """Each run of true rows of ``mask`` as ``(start, stop)``, stop exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _nines(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(-np.log10(np.maximum(1.0 - p, 10.0**-MAX_NINES)), MAX_NINES)


def _sensor_order(log: SensorLog, spans: list[AlertSpan]) -> list[int]:
    named = [c.sensor for s in spans if s.why is not None for c in s.why.contributions]
    order = [log.sensors.index(n) for n in dict.fromkeys(named) if n in log.sensors]
    order += [i for i in range(len(log.sensors)) if i not in order]
    return order[:MAX_SENSORS]


def draw(log: SensorLog, result: BacktestResult, truth: np.ndarray | None, title: str) -> Any:
    """The backtest's figure (a matplotlib ``Figure``)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    spans = alert_spans(result)
    sensors = _sensor_order(log, spans)
    when = log.timestamps_ns.astype("datetime64[ns]").astype("datetime64[ms]")
    fig = Figure(figsize=(13, 1.3 * len(sensors) + 3.4 + 0.15 * min(len(spans), MAX_CAPTIONS)), layout="constrained")
    axes = fig.subplots(len(sensors) + 1, 1, sharex=True, height_ratios=[1] * len(sensors) + [2.2])
    labelled = _spans_of(truth > 0) if truth is not None else []
    for ax in axes:
        for start, stop in labelled:
            ax.axvspan(when[start], when[min(stop, len(when) - 1)], color="#f0a30a", alpha=0.25, lw=0)
        for span in spans:
            ax.axvspan(when[span.start], when[min(span.stop, len(when) - 1)], color="#c62828", alpha=0.18, lw=0)
    for ax, column in zip(axes, sensors, strict=False):
        ax.plot(when, log.values[:, column], lw=0.7, color="#1d3b53")
        ax.set_ylabel(log.sensors[column], rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    prob = axes[-1]
    end = result.baseline_end
    scored = np.isfinite(result.probability) & (np.arange(len(result)) >= end)
    prob.plot(when[scored], _nines(result.probability[scored]), lw=0.7, color="#1d3b53", label="anomaly probability")
    if result.alarm_enter is not None:
        prob.axhline(_nines(np.array([result.alarm_enter]))[0], color="#c62828", ls="--", lw=1, label="alarm level")
    if 0 < end < len(when):
        prob.axvline(when[end], color="#60707d", ls=":", lw=1, label="end of baseline")
    ticks = np.arange(0, MAX_NINES + 1)
    prob.set_yticks(ticks, ["0"] + [f"{1 - 10.0**-n:.{int(n)}f}" for n in ticks[1:]], fontsize=7)
    prob.set_ylim(0, MAX_NINES + 0.6)  # room above for the alerts' labels
    prob.set_ylabel("probability", fontsize=8)
    for span in spans:  # each alert's number at its start; its top sensors below the figure
        prob.annotate(str(span.number), (when[span.start], MAX_NINES + 0.05), fontsize=8, color="#c62828")
    named = [f"{span.number}: {span.sensors_text()}" for span in spans[:MAX_CAPTIONS]]
    if len(spans) > MAX_CAPTIONS:
        named.append(f"... and {len(spans) - MAX_CAPTIONS} more (--html lists them all)")
    fig.supxlabel("\n".join(["alerts and their top sensors:", *named] if named else ["no alert"]), fontsize=8)
    handles, _ = prob.get_legend_handles_labels()
    handles.append(Patch(color="#c62828", alpha=0.18, label="alert"))
    if truth is not None:
        handles.append(Patch(color="#f0a30a", alpha=0.25, label="labelled anomaly"))
    prob.legend(handles=handles, loc="lower left", fontsize=7, ncols=5)
    prob.tick_params(axis="x", labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def write_png(path: str | Path, fig: Any) -> None:
    fig.savefig(path, dpi=110, format="png")


def probability_text(p: float) -> str:
    """A probability with its nines and the digits after them: ``0.9999898``, not ``1.000000`` (the
    alarm levels the false-alert target derives lie at five to seven nines)."""
    if not 0.9 < p < 1.0:  # nothing to keep (and NaN, 1.0 or beyond as given)
        return str(np.format_float_positional(p, precision=6, trim="-"))
    digits = min(max(6, math.floor(-math.log10(1.0 - p)) + 3), 16)  # the nines and two digits after them
    # cut, not rounded: rounding 0.99998999 to its nines and two more digits would show five nines
    return str(np.format_float_positional(math.floor(p * 10**digits) / 10**digits, precision=digits, trim="-"))


def _alarm_level(result: BacktestResult) -> str:
    if result.alarm_enter is None:
        return ""
    return f"<p>alarm level: probability &ge; {probability_text(result.alarm_enter)}</p>\n"


def write_html(path: str | Path, fig: Any, result: BacktestResult, title: str) -> None:
    """The figure and the table of alerts, in one HTML file with nothing to fetch."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    rows = "\n".join(
        f"<tr><td>{s.number}</td><td>{html.escape(result.timestamp_text[s.start])}</td>"
        f"<td>{html.escape(result.timestamp_text[s.stop - 1])}</td><td>{s.stop - s.start}</td>"
        f"<td>{probability_text(s.peak_probability)}</td><td>{html.escape(s.sensors_text())}</td></tr>"
        for s in alert_spans(result)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d232a}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left}}</style>
</head><body><h1>{html.escape(title)}</h1>
<img alt="sensor traces, anomaly probability with the alarm level, alerts shaded" src="data:image/png;base64,{image}">
<h2>Alerts</h2>
{_alarm_level(result)}<table><thead><tr><th>#</th><th>first row</th><th>last row</th><th>rows</th>
<th>peak probability</th><th>top sensors</th></tr></thead>
<tbody>
{rows or '<tr><td colspan="6">none</td></tr>'}
</tbody></table></body></html>
"""
    Path(path).write_text(page, encoding="utf-8")


# -- remaining useful life ---------------------------------------------------------------------------


def read_truth(path: str | Path, assets: list[str]) -> np.ndarray:
    """True remaining life per asset, from ``path``: a CSV with the header ``asset,rul``, or one number
    per line in the order the assets appear in the log (C-MAPSS's ``RUL_FD001.txt``). ValueError naming
    the file and line for anything else."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if lines and lines[0].replace(" ", "").lower() == "asset,rul":
        found: dict[str, float] = {}
        for number, line in enumerate(lines[1:], start=2):
            name, _, value = line.rpartition(",")
            found[name.strip()] = _number(value, path, number)
        missing = [a for a in assets if a not in found]
        if missing:
            raise ValueError(f"{path}: no true RUL for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        return np.array([found[a] for a in assets])
    if len(lines) != len(assets):
        raise ValueError(f"{path}: {len(lines)} values for {len(assets)} assets (one per line, in the log's order)")
    return np.array([_number(line, path, number) for number, line in enumerate(lines, start=1)])


def _number(text: str, path: str | Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise ValueError(f"{path}: line {line}: {text!r} is not a finite number")
    return value


def against_truth(rul: np.ndarray, low: np.ndarray, high: np.ndarray, truth: np.ndarray) -> str:
    """``RMSE 11.91, interval covers 87% of 100 assets``: predictions against the true remaining lives."""
    rmse = float(np.sqrt(np.mean((rul - truth) ** 2)))
    covered = float(np.mean((truth >= low) & (truth <= high)))
    return f"RMSE {rmse:.2f}, interval covers {covered:.0%} of {truth.size} assets"


def draw_rul(rul: np.ndarray, low: np.ndarray, high: np.ndarray, truth: np.ndarray | None, title: str) -> Any:
    """Each asset's predicted remaining life with its interval, sorted by the truth when given (else by
    the prediction), the truth beside it; RMSE and interval coverage in the title."""
    from matplotlib.figure import Figure

    order = np.argsort(truth if truth is not None else rul, kind="stable")
    x = np.arange(order.size)
    fig = Figure(figsize=(13, 5), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(x, low[order], high[order], step="mid", color="#1d3b53", alpha=0.18, lw=0, label="interval")
    ax.plot(x, rul[order], ".", color="#1d3b53", ms=4, label="predicted")
    if truth is not None:
        ax.plot(x, truth[order], "_", color="#c62828", ms=7, mew=1.5, label="true")
        title += f": {against_truth(rul, low, high, truth)}"
    ax.set_xlabel("assets, by true remaining life" if truth is not None else "assets, by predicted remaining life")
    ax.set_ylabel("remaining life (time steps)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
