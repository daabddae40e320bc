"""`plantwatch backtest`: score a sensor log offline with the live detector and alarm rules."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from detector.config import MIN_BASELINE_ROWS
from detector.detectability import describe_shifts
from plantwatch.cli.common import CommandError, add_log_level, counted, input_file, output_file, png_file
from plantwatch.cli.progress import progress_bar
from plantwatch.offline.evaluation import delay_summary
from plantwatch.settings import load_settings

if TYPE_CHECKING:
    from plantwatch.offline.verdict_labels import VerdictPeriod


def add_parser(subparsers: Any) -> None:
    bt = subparsers.add_parser("backtest", help="score a sensor log offline with the live detector and alarm rules")
    bt.add_argument("log", metavar="LOG.csv", help="CSV sensor log")
    bt.add_argument(
        "--train-rows",
        type=_train_rows,
        required=True,
        help=f"first N rows are the normal baseline (at least {MIN_BASELINE_ROWS})",
    )
    bt.add_argument(
        "--out",
        required=True,
        metavar="SCORES.csv",
        help="write timestamp,score,probability,anomaly,status to this file; the three left empty for baseline rows",
    )
    bt.add_argument("--label-column", action="append", default=[], help="label column, never seen by the model")
    bt.add_argument(
        "--labels",
        metavar="LABELS.csv",
        help="operators' verdicts from `plantwatch alerts labels`: the rows of --asset (or of the file's one asset) "
        "in a true_fault period are labelled faults, all others normal",
    )
    bt.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="COLUMN",
        help="score a column named like a label (anomaly, label, changepoint, is_anomaly) as a sensor "
        "anyway; undeclared ones are left out by default (repeatable)",
    )
    bt.add_argument("--time-column", help="name of the time column (default: auto-detect)")
    bt.add_argument("--config", help="YAML config whose detector section to use")
    bt.add_argument(
        "--asset", help="apply this asset's detector.assets overrides from --config, as the live service does"
    )
    bt.add_argument(
        "--explain", metavar="WHY.jsonl", help="also write JSON lines explaining every anomalous row (top sensors)"
    )
    bt.add_argument(
        "--plot",
        metavar="OUT.png",
        help="also draw the sensors, the anomaly probability with the alarm level, alerts and labelled spans",
    )
    bt.add_argument("--html", metavar="OUT.html", help="the same picture and a table of the alerts, in one HTML file")
    add_log_level(bt)
    bt.set_defaults(func=main)


def _train_rows(text: str) -> int:
    """--train-rows is the monitor's baseline_rows: refused here, naming the flag, not the config key."""
    try:
        rows = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows, got {text!r}") from None
    if rows < MIN_BASELINE_ROWS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_BASELINE_ROWS} rows, got {rows}")
    return rows


def _as_flags(advice: str) -> str:
    """The monitor's advice names the live setting (baseline_rows) and asset; here they are --train-rows and the log."""
    return advice.replace("baseline of backtest:", "baseline:").replace("baseline_rows >= ", "--train-rows ")


def _verdicts(path: str, asset: str | None) -> list[VerdictPeriod]:
    """The --labels file's periods of ``asset``, or of its only asset; CommandError naming the flag."""
    from plantwatch.offline.verdict_labels import read_periods

    input_file("--labels", path)
    try:
        periods = read_periods(path)
    except ValueError as exc:
        raise CommandError(f"--labels: {exc}") from None
    assets = sorted({p.asset for p in periods})
    if asset is None:
        if len(assets) > 1:
            raise CommandError(
                f"--labels: {path} holds alerts of {', '.join(assets)}; name the log's asset with --asset"
            )
        return periods
    mine = [p for p in periods if p.asset == asset]
    if not mine:
        raise CommandError(f"--labels: {path} holds no alert of {asset!r} (it has {', '.join(assets) or 'none'})")
    return mine


def _late(rows: int) -> str:
    # "skipped" reads as missing values; rows out of time order need another fix
    return f": {rows} stamped before an earlier row, sort the log by time" if rows else ""


def main(args: argparse.Namespace) -> int:
    from ingest.logfile import left_out_notice
    from plantwatch.offline.backtest import VERDICT_LABEL, backtest_main, baseline_words
    from plantwatch.offline.pictures import probability_text

    # Checked before the work: scoring a long log takes minutes, which a bad --out would waste.
    input_file("LOG.csv", args.log)
    output_file("--out", args.out)
    for flag, path in (("--explain", args.explain), ("--html", args.html)):
        if path is not None:
            output_file(flag, path)
    if args.plot is not None:
        png_file("--plot", args.plot)
    # The same detector settings the live service runs with (the embedded default without --config);
    # storage is irrelevant offline, so no InfluxDB token is asked for.
    detector = load_settings(args.config, offline=True).detector
    if args.asset is not None and args.asset not in detector.assets:
        if args.config is None and not detector.assets:
            note = f"--asset {args.asset}: there are no per-asset overrides without --config FILE (its detector.assets)"
            print(f"note: {note}; using the embedded default's detector settings", file=sys.stderr)
        else:
            known = ", ".join(sorted(detector.assets)) or "none"
            print(
                f"note: detector.assets has no {args.asset!r} (overrides for: {known}); using the top-level settings",
                file=sys.stderr,
            )
    config = detector.as_config(args.asset)
    verdicts = _verdicts(args.labels, args.asset) if args.labels is not None else []
    with progress_bar("scoring", "rows") as progress:
        summary = backtest_main(
            args.log,
            args.out,
            train_rows=args.train_rows,
            label_columns=tuple(args.label_column),
            time_column=args.time_column,
            config=config,
            explain_path=args.explain,
            include=tuple(args.include),
            verdicts=verdicts,
            progress=progress,
            plot_path=args.plot,
            html_path=args.html,
        )
    notice = left_out_notice(
        args.log, summary["left_out"], "--label-column NAME scores against one, --include NAME scores it as a sensor"
    )
    if notice:
        print(notice, file=sys.stderr)
    not_running = ""
    if summary["stopped_rows"] or summary["settling_rows"]:
        not_running = f", {summary['stopped_rows']} stopped, {summary['settling_rows']} settling after a start"
    baseline = baseline_words(summary["train_rows"], summary["warming_up_rows"], summary["baseline_extensions"])
    written = [p for p in (args.out, args.explain, args.plot, args.html) if p]
    print(
        f"scored {counted(summary['rows'], 'row')} x {counted(len(summary['sensors']), 'sensor')} "
        f"({baseline}, {summary['skipped_rows']} skipped{_late(summary['late_rows'])}{not_running}) "
        f"in {summary['seconds']:.3f} s "
        f"= {summary['rows_per_second']:,.0f} rows/s; {counted(summary['anomalous_rows'], 'row')} anomalous in "
        f"{counted(summary['alerts'], 'alert')}; wrote {', '.join(written)}"
    )
    if summary["alarm_enter"] is not None:
        target = summary["settings"]["false_alerts_per_week"]
        why = f"derived for {target:g} false alerts per week" if target is not None else "enter"
        print(f"alarm level: probability >= {probability_text(summary['alarm_enter'])} ({why})")
    if summary["smallest_shifts"]:
        print(
            "smallest settled shift of each sensor the alarm flags (a slow change; a sudden step shows "
            "sooner): " + describe_shifts(summary["smallest_shifts"])
        )
    if summary["drifting_sensors"]:
        print(
            "level wanders over the baseline, judged by how they move only: " + ", ".join(summary["drifting_sensors"])
        )
    if summary["baseline_advice"]:
        print(_as_flags(summary["baseline_advice"]))
    metrics = summary.get("metrics")
    label_names = [*args.label_column, *([VERDICT_LABEL] if verdicts else [])]
    if verdicts:
        counts = Counter(v.verdict for v in verdicts)
        said = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
        print(f"labels from {args.labels}: {said} alerts of {verdicts[0].asset} (true_fault rows are faults)")
    if metrics:
        print(
            f"point-wise after row {summary['scored_from']} (label = any of {', '.join(label_names)}): "
            f"precision {metrics['precision']:.3f}  recall {metrics['recall']:.3f}  F1 {metrics['f1']:.3f}  "
            f"(TP {metrics['tp']}, FP {metrics['fp']}, FN {metrics['fn']}, TN {metrics['tn']})"
        )
        d = delay_summary(summary["segment_delays_s"])
        if d["segments"]:
            when = ""
            if d["flagged"]:
                when = f"; first flag a median {d['median_s']:.4g} s after a segment starts "
                when += f"({d['min_s']:.4g}..{d['max_s']:.4g} s)"
            flagged = f"{d['flagged']} of {d['segments']} flagged"
            print(f"labelled segments after row {summary['scored_from']}: {flagged}{when}")
        if inside := summary["labelled_in_baseline"]:
            print(
                f"{inside} labelled rows lay in the baseline after row {summary['train_rows']} "
                f"(the baseline ran to row {summary['scored_from']}): learned as normal, not judged"
            )
    return 0
