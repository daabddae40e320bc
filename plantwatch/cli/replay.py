"""`plantwatch replay`: publish a sensor log over MQTT, one JSON frame per row."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from plantwatch.cli.common import CommandError, add_log_level, counted, input_file, positive_number
from plantwatch.cli.progress import progress_bar
from plantwatch.settings import Settings, load_settings
from plantwatch.settings_errors import mask_password

if TYPE_CHECKING:
    from ingest.replay import Publisher

DEFAULT_TEMPLATE = "plantwatch/{asset}"  # the embedded default configuration's mqtt.topic_template


def add_parser(subparsers: Any) -> None:
    rep = subparsers.add_parser("replay", help="publish a sensor log over MQTT, one JSON frame per row")
    rep.add_argument(
        "log", metavar="LOG.csv", help="CSV sensor log (time column + numeric sensor columns; ',' ';' or tab separated)"
    )
    rep.add_argument(
        "--broker",
        metavar="URL",
        help="mqtt://HOST:PORT or mqtts://HOST:PORT (TLS); default with --config: its mqtt.url",
    )
    rep.add_argument("--asset", required=True, help="asset name the rows belong to")
    rep.add_argument(
        "--config",
        help="YAML config whose mqtt.topic_template names the topic and whose mqtt.url, username and password "
        "(PLANTWATCH_MQTT__PASSWORD) reach the broker",
    )
    rep.add_argument("--topic", type=_publish_topic, help="publish to this topic instead of the template's")
    rep.add_argument(
        "--tag",
        action="append",
        default=[],
        type=_tag,
        metavar="NAME=VALUE",
        help="fill the template's {NAME} segment, e.g. --tag line=l1 for plant/{line}/{asset} (repeatable)",
    )
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
    pace.add_argument("--speed", type=positive_number, metavar="X", help="replay at the log's own pace times X")
    pace.add_argument("--rate", type=positive_number, metavar="N", help="replay at N rows per second")
    pace.add_argument("--fast", action="store_true", help="as fast as the broker acknowledges (default)")
    add_log_level(rep)
    rep.set_defaults(func=main)


def _publish_topic(text: str) -> str:
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError("must be a topic such as plantwatch/pump-1")
    if "+" in text or "#" in text:
        raise argparse.ArgumentTypeError(f"a topic to publish to cannot hold the MQTT wildcards + or #, got {text!r}")
    return text


def _tag(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, e.g. line=l1, got {text!r}")
    return name, value


def main(args: argparse.Namespace) -> int:
    from ingest.logfile import left_out_notice, read_sensor_log
    from ingest.replay import ReplayInterrupted, replay

    input_file("LOG.csv", args.log)
    # offline: replay writes nothing to InfluxDB, so the file's storage needs no token here.
    settings = load_settings(args.config, offline=True) if args.config else None
    broker = _broker(args.broker, settings, args.config)
    if args.topic and args.tag:
        raise CommandError("--tag fills the topic template's segments; with --topic there is no template to fill")
    topic = args.topic or _topic_from_template(args, settings)
    sensor_log = read_sensor_log(
        args.log,
        time_column=args.time_column,
        ignore_columns=tuple(args.label_column),  # never published, so never read (text in them is fine)
        include=tuple(args.include),
    )
    if not len(sensor_log):
        raise ValueError(f"{args.log}: no data rows after the header; nothing to replay")
    _check_names(args, sensor_log.sensors)
    notice = left_out_notice(args.log, sensor_log.left_out, "--include NAME publishes one as a sensor")
    if notice:
        print(notice, file=sys.stderr)
    silent = sensor_log.sensors_without_numbers()
    if silent:
        print(f"note: {args.log}: {', '.join(silent)} hold no number in any row; never published", file=sys.stderr)
    publisher = _connect(broker, settings)
    try:
        with progress_bar(f"publishing to {topic}", "frames") as progress:
            stats = replay(sensor_log, publisher, topic, speed=args.speed, rate=args.rate, progress=progress)
    except ReplayInterrupted as stopped:  # main says "interrupted"; first what reached the broker
        waiting = publisher.unacknowledged()
        unsure = f" ({waiting} of them not yet acknowledged by the broker)" if waiting else ""
        print(f"published {stopped.published} of {stopped.rows} frames to {topic}{unsure}", file=sys.stderr)
        raise
    finally:
        publisher.close()
    print(
        f"published {counted(stats.published, 'frame')} of {counted(len(sensor_log.sensors), 'sensor')} to {topic} in "
        f"{stats.seconds:.2f} s ({stats.published / max(stats.seconds, 1e-9):,.0f} rows/s); "
        f"{stats.skipped_values} empty/non-numeric values left out"
    )
    return 0


def _check_names(args: argparse.Namespace, sensors: Sequence[str]) -> None:
    """Names the service would refuse (``bad_name``, every frame), refused before anything is published:
    the asset (with ``--topic``, the service reads it from the topic: each of its levels) and the sensors."""
    from ingest.formats.base import name_problem

    refused = "the service refuses every frame of such an asset"
    if args.topic:
        for level in filter(None, args.topic.split("/")):
            if problem := name_problem(level):
                raise CommandError(f"--topic {args.topic!r}: {level!r} {problem}: {refused}")
    elif problem := name_problem(args.asset):
        raise CommandError(f"--asset {args.asset!r} {problem}: {refused}")
    for sensor in sensors:
        if problem := name_problem(sensor):
            raise CommandError(f"{args.log}: column {sensor!r} {problem}: the service refuses such a sensor; rename it")


class _Broker(NamedTuple):
    where: str  # where the URL came from, as the messages name it: "--broker URL" or "FILE: mqtt.url URL"
    host: str
    port: int
    tls: bool


def _broker(flag: str | None, settings: Settings | None, config: str | None) -> _Broker:
    if flag is not None:
        where, url = f"--broker {mask_password(flag)}", flag
    elif settings is not None:
        where, url = f"{config}: mqtt.url {mask_password(settings.mqtt.url)}", settings.mqtt.url
    else:
        raise CommandError("replay needs --broker mqtt://HOST:PORT, or --config FILE whose mqtt.url names the broker")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = -1
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or port == -1:
        raise CommandError(f"{where}: must look like mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = parts.scheme == "mqtts"
    return _Broker(where, parts.hostname, port or (8883 if tls else 1883), tls)


def _connect(broker: _Broker, settings: Settings | None) -> Publisher:
    """A connected publisher; the broker's credentials come from the config, if one was given."""
    from ingest.connack import NoSession
    from ingest.replay import Publisher

    mqtt = settings.mqtt if settings is not None else None
    try:
        return Publisher(
            broker.host,
            broker.port,
            tls=broker.tls,
            username=mqtt.username if mqtt else None,
            password=mqtt.password.get_secret_value() if mqtt and mqtt.password else None,
        )
    except socket.gaierror as exc:
        raise CommandError(f"{broker.where}: cannot resolve {broker.host}: {exc.strerror}") from None
    except NoSession as exc:  # the broker refused the session, or is silent
        raise CommandError(f"{broker.where}: {exc}") from None
    except OSError as exc:
        cause = getattr(exc, "reason", None) or exc.strerror or exc  # ssl.SSLError has a reason
        if broker.tls and not isinstance(exc, ConnectionRefusedError):
            raise CommandError(f"{broker.where}: TLS handshake failed: {cause} (does the port speak TLS?)") from None
        raise CommandError(f"{broker.where}: cannot connect: {cause}") from None


def _topic_from_template(args: argparse.Namespace, settings: Settings | None) -> str:
    """The topic the service would read this asset's frames from, the template's other segments filled by --tag."""
    from ingest.topics import TopicTemplate

    template = TopicTemplate(settings.mqtt.topic_template if settings is not None else DEFAULT_TEMPLATE)
    named = f"the topic template {template.template}"
    tags = dict(args.tag)
    if template.has_sensor:
        filled = {name: tags.get(name, name.upper()) for name in template.tag_names}
        try:
            example = template.render(asset=args.asset, sensor="frame", **filled)
        except ValueError:  # an asset name that cannot be a topic segment: the template shows the way
            example = template.template
        raise CommandError(
            f"{named} has a {{sensor}} segment, but replay publishes one frame of all sensors per row: give "
            f"--topic, e.g. --topic {example} (the service takes a frame on any sensor's topic), or use a config "
            "whose template has no {sensor}"
        )
    for name in tags:
        if name not in template.tag_names:
            raise CommandError(f"--tag {name}: {named} has no {{{name}}} segment")
    missing = [name for name in template.tag_names if name not in tags]
    if missing:
        needs = " ".join(f"--tag {name}=VALUE" for name in missing)
        raise CommandError(f"{named} needs {needs}, or give --topic")
    try:
        return template.render(asset=args.asset, **tags)
    except ValueError as exc:  # a value with '/', '+' or '#'
        raise CommandError(f"--asset/--tag: {exc}") from None
