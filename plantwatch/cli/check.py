"""`plantwatch check`: validate a configuration and reach its servers, without starting the service or
changing anything (no file, folder or table is created).

In order: the settings (every key, plus the detector's trial baseline that ``load_settings`` fits),
then the MQTT broker (a full MQTT CONNECT with the configured protocol, TLS and credentials; with
``source: nats`` the NATS server, JetStream and the stream instead), the
time-series database (``GET /health``: InfluxDB 2 and VictoriaMetrics both answer it) or the SQLite
readings file, the alert store, the folder for the learned models, and the API's keys (a host other
than loopback needs one, as ``plantwatch run`` does). One line per check; exit 0 when all pass, 2
otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from plantwatch.cli.common import add_log_level


def add_parser(subparsers: Any) -> None:
    check = subparsers.add_parser(
        "check", help="validate a configuration and reach its broker, database and alert store, then exit"
    )
    check.add_argument("--config", help="YAML config file (default: the embedded default configuration)")
    add_log_level(check)
    check.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # Imported here, as in every command: `plantwatch --help` need not load the clients and the models.
    from ingest.topics import TopicTemplate
    from plantwatch.service.reachability import (
        CheckFailed,
        check_alert_store,
        check_broker,
        check_model_dir,
        check_storage,
    )
    from plantwatch.service.wiring import describe_alert_outputs, mqtt_options
    from plantwatch.settings import ConfigError, load_settings

    where = args.config or "the embedded default configuration"
    try:
        settings = load_settings(args.config)
        options = mqtt_options(settings, TopicTemplate(settings.mqtt.topic_template))
    except ConfigError as exc:
        _report(False, "settings", str(exc))
        return 2
    _report(True, "settings", f"{where}: valid; detector {settings.detector.kind} learned a trial baseline")
    if settings.source == "nats":
        first: tuple[str, Callable[[], str]] = ("nats", lambda: _nats(settings))
    else:
        first = ("broker", lambda: check_broker(options))
    checks: list[tuple[str, Callable[[], str]]] = [
        first,
        ("storage", lambda: check_storage(settings)),
        ("alerts", lambda: check_alert_store(settings.alerts.store_url)),
        ("models", lambda: check_model_dir(settings.detector.model_dir)),
        ("api", lambda: _api_keys(settings)),
        ("outputs", lambda: describe_alert_outputs(settings)),
    ]
    passed = True
    for name, run in checks:
        try:
            _report(True, name, run())
        except CheckFailed as exc:
            _report(False, name, str(exc))
            passed = False
    return 0 if passed else 2


def _nats(settings: Any) -> str:
    from plantwatch.service.reachability import CheckFailed

    try:
        from plantwatch.service.scaleout import check_nats
    except ImportError as exc:
        raise CheckFailed(f"source: nats needs nats-py: pip install 'plantwatch[nats]' ({exc})") from None
    return check_nats(settings.nats.url, settings.nats.stream)


def _api_keys(settings: Any) -> str:
    """What ``plantwatch run`` will say of the API's keys; CheckFailed where it would refuse to start."""
    from plantwatch.service.reachability import CheckFailed
    from plantwatch.service.wiring import check_api_access
    from plantwatch.settings import ConfigError

    try:
        return check_api_access(settings.api)
    except ConfigError as exc:
        raise CheckFailed(str(exc)) from None


def _report(ok: bool, name: str, message: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'}  {name:<8}  {message}", flush=True)
