"""The `plantwatch` command line: one module per command, each adding its own subparser.

A command module has ``add_parser(subparsers)``, which registers the command and sets ``func`` to
the function that runs it with the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from plantwatch import __version__
from plantwatch.cli import backtest, check, config, demo, replay, rul, run
from plantwatch.settings import ConfigError

# In the order a newcomer meets them: try it, write a config, check it, run it; then the offline tools.
COMMANDS = (demo, config, check, run, replay, backtest, rul)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser
