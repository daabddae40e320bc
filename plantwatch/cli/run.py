"""`plantwatch run`: the service — MQTT ingest, storage, detection and the alert API."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from plantwatch.cli.common import add_log_level
from plantwatch.settings import load_settings


def add_parser(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run the service: MQTT ingest, storage, detection and the alert API")
    run.add_argument("--config", help="YAML config file (default: the embedded default configuration)")
    add_log_level(run)
    run.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from plantwatch.service.wiring import build_service, serve

    settings = load_settings(args.config)
    logging.getLogger().setLevel(settings.log_level)
    return serve(build_service(settings))
