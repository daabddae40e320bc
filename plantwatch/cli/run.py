"""`plantwatch run`: the service — MQTT ingest, storage, detection and the alert API."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from plantwatch.cli.common import add_log_level
from plantwatch.settings import load_settings


def add_parser(subparsers: Any) -> None:
    run = subparsers.add_parser("run", help="run the service: MQTT ingest, storage, detection and the alert API")
    run.add_argument("--config", help="YAML config file (default: the embedded default configuration)")
    add_log_level(run)
    run.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Exit 0 after SIGINT/SIGTERM stopped the service cleanly; 2 when it cannot start or storage failed."""
    try:
        from plantwatch.service.listen import bind_api
        from plantwatch.service.wiring import (
            build_service,
            build_worker_service,
            check_api_access,
            describe_alert_outputs,
            serve,
        )

        settings = load_settings(args.config)  # seconds: it learns a trial baseline per detector setting
        logging.getLogger().setLevel(settings.log_level)
        # Bound first: a port in use is one line, before the broker or the stores are touched.
        sockets = bind_api(settings.api.host, settings.api.port)
        access = check_api_access(settings.api)  # nothing answers on the sockets before serve()
        service = build_worker_service(settings) if settings.source == "nats" else build_service(settings)
        logging.getLogger("plantwatch.service.wiring").info("%s; %s", access, describe_alert_outputs(settings))
    except KeyboardInterrupt:  # Ctrl-C while starting: nothing runs yet, nothing to stop
        print("plantwatch: interrupted while starting", file=sys.stderr)
        return 130
    return serve(service, sockets)
