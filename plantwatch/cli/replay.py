"""`plantwatch replay`: publish a sensor log over MQTT, one JSON frame per row."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlsplit

from plantwatch.cli.common import add_log_level
from plantwatch.settings import load_settings


def add_parser(subparsers: Any) -> None:
    rep = subparsers.add_parser("replay", help="publish a sensor log over MQTT, one JSON frame per row")
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
    add_log_level(rep)
    rep.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ingest.logfile import read_sensor_log
    from ingest.replay import Publisher, replay
    from ingest.topics import TopicTemplate

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
