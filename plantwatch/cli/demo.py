"""`plantwatch demo`: a self-contained demo — in-process broker, embedded storage, an injected fault."""

from __future__ import annotations

import argparse
from typing import Any

from plantwatch.cli.common import CommandError, add_log_level, output_folder, port_number, positive_number


def add_parser(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="self-contained demo: in-process broker, embedded storage, injected fault"
    )
    demo.add_argument("--rate", type=positive_number, default=200.0, help="replay rows per second (default 200)")
    demo.add_argument("--port", type=port_number, default=0, help="API port (default: a free port)")
    demo.add_argument("--keep-running", action="store_true", help="keep the API up after the alert")
    demo.add_argument("--workdir", help="where the demo's SQLite files go (default: a temp dir)")
    add_log_level(demo)
    demo.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from plantwatch.demo import run_demo

    if args.workdir is not None:
        if not args.workdir:
            raise CommandError("--workdir: give a folder (without it the demo uses a temp folder of its own)")
        output_folder("--workdir", args.workdir)
    return run_demo(rate=args.rate, api_port=args.port, keep_running=args.keep_running, workdir=args.workdir)
