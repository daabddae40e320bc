"""`plantwatch rul fit|predict`: remaining useful life from run-to-failure logs (see ``rul_files``)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from plantwatch.cli.common import (
    CommandError,
    add_log_level,
    counted,
    counting_number,
    input_file,
    output_file,
    output_folder,
    png_file,
    positive_number,
    seed_number,
    share,
)
from plantwatch.cli.progress import progress_bar


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _fit(args: argparse.Namespace) -> int:
    # Imported here: scikit-learn takes ~1.5 s to import, which every other command (and --help) would pay.
    from detector.rul import RulModel
    from plantwatch.maintenance.rul_files import read_fleet_csv, save_model

    input_file("TRAIN.csv", args.train)
    output_folder("--out", args.out)
    log = read_fleet_csv(
        args.train, args.asset_column, args.time_column, _split(args.settings_columns), args.label_column
    )
    model = RulModel(cap=args.cap, window=args.window, coverage=args.coverage, random_state=args.seed)
    with progress_bar("fitting", "fits") as progress:  # the cross-validation folds, then the final model
        model.fit(log.histories, progress=progress)
    save_model(model, args.out, log.sensor_columns, log.settings_columns)
    kept = [c for c, k in zip(log.sensor_columns, model.keep_, strict=True) if k]
    print(
        f"fitted on {counted(len(log.assets), 'asset')}: {counted(model.normalizer_.k_, 'regime')}, "
        f"sensors used: {', '.join(kept)}; "
        f"CV RMSE {model.cv_rmse_:.2f} (per-asset weighted {model.cv_rmse_last_:.2f}), "
        f"CV interval coverage {model.cv_coverage_:.1%} → {args.out}"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from plantwatch.maintenance.rul_files import load_model, model_problem, read_fleet_csv
    from plantwatch.offline.pictures import against_truth, draw_rul, read_truth, write_png

    input_file("TEST.csv", args.test)
    output_file("--out", args.out)
    if args.truth is not None:
        input_file("--truth", args.truth)
    if args.plot is not None:
        png_file("--plot", args.plot)
    problem = model_problem(Path(args.model))
    if problem is not None:
        raise CommandError(f"--model {args.model}: {problem}")
    try:
        model, sensors, settings = load_model(args.model)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged or foreign model.json / arrays.npz
        raise CommandError(f"--model {args.model}: cannot load it: {exc}") from None
    log = read_fleet_csv(
        args.test, args.asset_column, args.time_column, settings, args.label_column, sensor_columns=sensors
    )
    truth = None
    if args.truth is not None:
        try:
            truth = read_truth(args.truth, list(log.assets))  # before the work: a bad file wastes none
        except (OSError, ValueError) as exc:
            raise CommandError(f"--truth {exc}") from None
    preds = model.predict(log.histories)
    out = Path(args.out)
    with out.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["asset", "rul", "rul_low", "rul_high"])
        for name, p in zip(log.assets, preds, strict=True):
            w.writerow([name, f"{p.rul:.3f}", f"{p.low:.3f}", f"{p.high:.3f}"])
    rul, low, high = (np.array([getattr(p, name) for p in preds]) for name in ("rul", "low", "high"))
    if args.plot is not None:
        write_png(args.plot, draw_rul(rul, low, high, truth, f"{Path(args.test).name}: remaining life"))
    print(f"{counted(len(preds), 'asset')} → {', '.join(p for p in (str(out), args.plot) if p)}")
    if truth is not None:
        print(f"against {args.truth}: {against_truth(rul, low, high, truth)}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``rul fit`` and ``rul predict`` to the ``plantwatch`` command's subparsers."""
    rul = subparsers.add_parser("rul", help="remaining useful life from run-to-failure logs")
    sub = rul.add_subparsers(required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--asset-column", required=True, help="column naming the asset (unit, engine, ...)")
        p.add_argument("--time-column", required=True, help="numeric, increasing time column (cycle, seconds)")
        p.add_argument("--label-column", action="append", default=[], help="column to leave out (repeatable)")
        add_log_level(p)

    fit = sub.add_parser("fit", help="learn RUL from logs that each end at the asset's failure")
    fit.add_argument(
        "train",
        metavar="TRAIN.csv",
        help="run-to-failure log: one row per asset per time step, each asset's last row at its failure",
    )
    common(fit)
    fit.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder to write the model to (model.json and arrays.npz; created if missing): "
        "rul predict --model and maintenance.rul_model read it",
    )
    fit.add_argument("--settings-columns", help="comma-separated operating-settings columns (default: setting*)")
    fit.add_argument(
        "--cap", type=positive_number, default=125.0, help="cap of the piece-wise linear target (default 125)"
    )
    fit.add_argument("--window", type=counting_number, default=90, help="feature window in rows (default 90)")
    fit.add_argument("--coverage", type=share, default=0.8, help="nominal interval coverage (default 0.8)")
    fit.add_argument("--seed", type=seed_number, default=0, help="random seed (default 0)")
    fit.set_defaults(func=_fit)

    pred = sub.add_parser("predict", help="RUL at each asset's last row: asset,rul,rul_low,rul_high")
    pred.add_argument(
        "test", metavar="TEST.csv", help="log of the assets to predict, as TRAIN.csv but up to now, not to a failure"
    )
    pred.add_argument("--model", required=True, metavar="DIR", help="model folder written by `rul fit --out DIR`")
    common(pred)
    pred.add_argument(
        "--out",
        required=True,
        metavar="PREDICTIONS.csv",
        help="write asset,rul,rul_low,rul_high to this file, one row per asset",
    )
    pred.add_argument(
        "--plot", metavar="OUT.png", help="also draw each asset's predicted remaining life with its interval"
    )
    pred.add_argument(
        "--truth",
        metavar="TRUTH.csv",
        help="true remaining lives: RMSE and interval coverage are printed (and drawn beside the predictions "
        "with --plot); asset,rul with that header, "
        "or one number per line in the log's asset order (C-MAPSS RUL_FD001.txt)",
    )
    pred.set_defaults(func=_predict)
    return rul
