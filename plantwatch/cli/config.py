"""`plantwatch config`: print the embedded default configuration, every key with its default and meaning."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from plantwatch.settings import DEFAULT_CONFIG


def add_parser(subparsers: Any) -> None:
    config = subparsers.add_parser(
        "config",
        help="print the embedded default configuration (start a config file from it: plantwatch config > plant.yaml)",
    )
    config.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    sys.stdout.write(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    return 0
