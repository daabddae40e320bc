"""The `plantwatch` command line: one module per command, each adding its own subparser.

A command module has ``add_parser(subparsers)``, which registers the command and sets ``func`` to
the function that runs it with the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from plantwatch.cli import backtest, demo, replay, rul, run
from plantwatch.settings import ConfigError

COMMANDS = (run, replay, backtest, demo, rul)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantwatch", description="Watch plant equipment: MQTT readings → InfluxDB → anomaly alerts."
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser
