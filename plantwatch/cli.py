"""The `plantwatch` command line: run, replay, backtest, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from plantwatch.evaluation import delay_summary
from plantwatch.settings import ConfigError, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO (the demo polls /alerts 8 times a second): keep its warnings only.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"plantwatch: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        print(f"plantwatch: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantwatch", description="Watch plant equipment: MQTT readings → InfluxDB → anomaly alerts."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the service: MQTT ingest, storage, detection and the alert API")
    run.add_argument("--config", help="YAML config file (default: the embedded configs/plantwatch.yaml)")
    run.set_defaults(func=_run)

    rep = sub.add_parser("replay", help="publish a sensor log over MQTT, one JSON frame per row")
    rep.add_argument("log", help="CSV sensor log (time column + numeric sensor columns; ',' or ';')")
    rep.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    rep.add_argument("--asset", required=True, help="asset name the rows belong to")
    rep.add_argument("--config", help="YAML config whose mqtt.topic_template names the topic")
    rep.add_argument("--topic", help="publish to this topic instead of the template's")
    rep.add_argument("--time-column", help="name of the time column (default: auto-detect)")
    rep.add_argument("--label-column", action="append", default=[], help="column to leave out (repeatable)")
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="replay at the log's own pace times X")
    pace.add_argument("--rate", type=float, help="replay at N rows per second")
    pace.add_argument("--fast", action="store_true", help="as fast as the broker acknowledges (default)")
    rep.set_defaults(func=_replay)

    bt = sub.add_parser("backtest", help="score a sensor log offline with the live detector and alarm rules")
    bt.add_argument("log", help="CSV sensor log")
    bt.add_argument("--train-rows", type=int, required=True, help="first N rows are the normal baseline")
    bt.add_argument("--out", required=True, help="SCORES.csv: timestamp,score,probability,anomaly")
    bt.add_argument("--label-column", action="append", default=[], help="label column, never seen by the model")
    bt.add_argument("--time-column", help="name of the time column (default: auto-detect)")
    bt.add_argument("--config", help="YAML config whose detector section to use")
    bt.add_argument("--asset", help="apply this asset's detector.assets overrides, as the live service does")
    bt.add_argument("--explain", help="also write JSON lines explaining every anomalous row (top sensors)")
    bt.set_defaults(func=_backtest)

    demo = sub.add_parser("demo", help="self-contained demo: in-process broker, embedded storage, injected fault")
    demo.add_argument("--rate", type=float, default=200.0, help="replay rows per second (default 200)")
    demo.add_argument("--port", type=int, default=0, help="API port (default: a free port)")
    demo.add_argument("--keep-running", action="store_true", help="keep the API up after the alert")
    demo.add_argument("--workdir", help="where the demo's SQLite files go (default: a temp dir)")
    demo.set_defaults(func=_demo)

    for p in (run, rep, bt, demo):
        p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    from plantwatch.rul import add_rul_parser  # `rul fit` / `rul predict` bring their own --log-level

    add_rul_parser(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from plantwatch.service import build_service, serve

    settings = load_settings(args.config)
    logging.getLogger().setLevel(settings.log_level)
    return serve(build_service(settings))


def _replay(args: argparse.Namespace) -> int:
    from ingest.decode import TopicTemplate
    from ingest.logfile import read_sensor_log
    from ingest.replay import Publisher, replay

    broker = urlsplit(args.broker)
    if broker.scheme != "mqtt" or not broker.hostname:
        raise ValueError(f"--broker must look like mqtt://HOST:PORT, got {args.broker!r}")
    if args.topic:
        topic = args.topic
    else:
        template = load_settings(args.config).mqtt.topic_template if args.config else "plantwatch/{asset}"
        topic = TopicTemplate(template).render(asset=args.asset)
    sensor_log = read_sensor_log(args.log, time_column=args.time_column, label_columns=tuple(args.label_column))
    publisher = Publisher(broker.hostname, broker.port or 1883)
    try:
        stats = replay(sensor_log, publisher, topic, speed=args.speed, rate=args.rate)
    finally:
        publisher.close()
    print(
        f"published {stats.published} frames of {len(sensor_log.sensors)} sensors to {topic} in "
        f"{stats.seconds:.2f} s ({stats.published / max(stats.seconds, 1e-9):,.0f} rows/s); "
        f"{stats.skipped_values} empty/non-numeric values left out"
    )
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from plantwatch.backtest import backtest_main

    # The same detector settings the live service runs with (the embedded default without --config);
    # storage is irrelevant offline, so no InfluxDB token is asked for.
    detector = load_settings(args.config, storage__kind="sqlite").detector
    if args.asset is not None and args.asset not in detector.assets:
        known = ", ".join(sorted(detector.assets)) or "none"
        print(
            f"note: detector.assets has no {args.asset!r} (overrides for: {known}); using the top-level settings",
            file=sys.stderr,
        )
    config = detector.as_config(args.asset)
    summary = backtest_main(
        args.log,
        args.out,
        train_rows=args.train_rows,
        label_columns=tuple(args.label_column),
        time_column=args.time_column,
        config=config,
        explain_path=args.explain,
    )
    print(
        f"scored {summary['rows']} rows x {len(summary['sensors'])} sensors "
        f"({summary['train_rows']} baseline, {summary['skipped_rows']} skipped) in {summary['seconds']:.3f} s "
        f"= {summary['rows_per_second']:,.0f} rows/s; {summary['anomalous_rows']} rows anomalous; wrote {args.out}"
    )
    if summary["drifting_sensors"]:
        print(
            "level wanders over the baseline, judged by how they move only: " + ", ".join(summary["drifting_sensors"])
        )
    if summary["baseline_advice"]:
        print(summary["baseline_advice"])
    metrics = summary.get("metrics")
    if metrics:
        print(
            f"point-wise after row {summary['train_rows']} (label = any of {', '.join(args.label_column)}): "
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
            print(f"labelled segments after row {summary['train_rows']}: {flagged}{when}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from plantwatch.demo import run_demo

    return run_demo(rate=args.rate, api_port=args.port, keep_running=args.keep_running, workdir=args.workdir)


if __name__ == "__main__":
    sys.exit(main())
