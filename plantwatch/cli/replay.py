"""`plantwatch replay`: publish a sensor log over MQTT, one JSON frame per row."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import urlsplit

from plantwatch.cli.common import add_log_level, input_file
from plantwatch.settings import load_settings


def add_parser(subparsers: Any) -> None:
    rep = subparsers.add_parser("replay", help="publish a sensor log over MQTT, one JSON frame per row")
    rep.add_argument(
        "log", metavar="LOG.csv", help="CSV sensor log (time column + numeric sensor columns; ',' ';' or tab separated)"
    )
    rep.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    rep.add_argument("--asset", required=True, help="asset name the rows belong to")
    rep.add_argument("--config", help="YAML config whose mqtt.topic_template names the topic")
    rep.add_argument("--topic", help="publish to this topic instead of the template's")
    rep.add_argument("--time-column", help="name of the time column (default: auto-detect)")
    rep.add_argument("--label-column", action="append", default=[], help="column to leave out (repeatable)")
    rep.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="COLUMN",
        help="publish a column named like a label (anomaly, label, changepoint, is_anomaly) as a sensor "
        "anyway; those are left out by default (repeatable)",
    )
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="replay at the log's own pace times X")
    pace.add_argument("--rate", type=float, help="replay at N rows per second")
    pace.add_argument("--fast", action="store_true", help="as fast as the broker acknowledges (default)")
    add_log_level(rep)
    rep.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ingest.logfile import left_out_notice, read_sensor_log
    from ingest.replay import Publisher, ReplayInterrupted, replay
    from ingest.topics import TopicTemplate

    broker = urlsplit(args.broker)
    if broker.scheme != "mqtt" or not broker.hostname:
        raise ValueError(f"--broker must look like mqtt://HOST:PORT, got {args.broker!r}")
    if args.topic:
        topic = args.topic
    else:
        template = load_settings(args.config).mqtt.topic_template if args.config else "plantwatch/{asset}"
        topic = TopicTemplate(template).render(asset=args.asset)
    sensor_log = read_sensor_log(
        input_file("LOG.csv", args.log),
        time_column=args.time_column,
        ignore_columns=tuple(args.label_column),  # never published, so never read (text in them is fine)
        include=tuple(args.include),
    )
    if not len(sensor_log):
        raise ValueError(f"{args.log}: no data rows after the header; nothing to replay")
    notice = left_out_notice(args.log, sensor_log.left_out, "--include NAME publishes one as a sensor")
    if notice:
        print(notice, file=sys.stderr)
    silent = sensor_log.sensors_without_numbers()
    if silent:
        print(f"note: {args.log}: {', '.join(silent)} hold no number in any row; never published", file=sys.stderr)
    publisher = Publisher(broker.hostname, broker.port or 1883)
    try:
        stats = replay(sensor_log, publisher, topic, speed=args.speed, rate=args.rate)
    except ReplayInterrupted as stopped:  # main says "interrupted"; first what reached the broker
        waiting = publisher.unacknowledged()
        unsure = f" ({waiting} of them not yet acknowledged by the broker)" if waiting else ""
        print(f"published {stopped.published} of {stopped.rows} frames to {topic}{unsure}", file=sys.stderr)
        raise
    finally:
        publisher.close()
    print(
        f"published {stats.published} frames of {len(sensor_log.sensors)} sensors to {topic} in "
        f"{stats.seconds:.2f} s ({stats.published / max(stats.seconds, 1e-9):,.0f} rows/s); "
        f"{stats.skipped_values} empty/non-numeric values left out"
    )
    return 0
