"""`plantwatch alerts labels`: operators' verdicts on alerts, written as labels for `plantwatch backtest`."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from plantwatch.cli.common import CommandError, add_log_level, counted, output_file
from plantwatch.settings import load_settings


def add_parser(subparsers: Any) -> None:
    alerts = subparsers.add_parser("alerts", help="work with the stored alerts (labels for backtest)")
    sub = alerts.add_subparsers(required=True, metavar="ACTION")
    labels = sub.add_parser(
        "labels",
        help="write each alert operators gave a verdict (true_fault, false_alarm, known_cause) as a labelled "
        "period, for `plantwatch backtest --labels`",
    )
    labels.add_argument("--config", help="YAML config whose alerts.store_url to read (default: the embedded default)")
    labels.add_argument("--asset", help="only this asset's alerts")
    labels.add_argument("--out", required=True, metavar="LABELS.csv", help="write asset,verdict,start,end,alert_id")
    add_log_level(labels)
    labels.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from alerts.store import StoreOpenError, open_store, sqlite_file
    from plantwatch.offline.verdict_labels import verdict_periods, write_periods

    output_file("--out", args.out)
    url = load_settings(args.config, offline=True).alerts.store_url
    path = sqlite_file(url)
    if path is not None and not Path(path).is_file():  # opening would create an empty store
        where = f"--config {args.config}" if args.config else "the embedded default configuration (give --config FILE)"
        raise CommandError(
            f"alerts.store_url: no alert store at {path} ({where}); is this the service's configuration?"
        )
    try:
        store = open_store(url)
    except StoreOpenError as exc:
        raise CommandError(f"alerts.store_url: {exc}") from None
    try:
        periods = verdict_periods(store, args.asset)
    finally:
        store.close()
    write_periods(args.out, periods)
    counts = Counter(p.verdict for p in periods)
    said = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items())) or "none"
    assets = sorted({p.asset for p in periods})
    print(
        f"wrote {counted(len(periods), 'alert')} with a verdict ({said}) of {counted(len(assets), 'asset')} "
        f"to {args.out}"
    )
    return 0
