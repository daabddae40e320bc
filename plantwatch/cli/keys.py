"""`plantwatch keys create|list|revoke`: the API keys in the file ``api.keys_file`` names.

A running service reads the file again when it changes: a new key works, and a revoked one stops
working, at its next request, without a restart.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.keys import SCOPES, KeyFile, KeyFileError
from plantwatch.cli.common import CommandError
from plantwatch.settings import load_settings


def add_parser(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="create, list and revoke the API's keys (scopes: read < operate < admin)",
        description="Keys live hashed in the file api.keys_file names (default plantwatch-keys.json); "
        "once it holds one, every API call but /healthz needs 'Authorization: Bearer <token>'.",
    )
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="add a key; its token is printed once, on standard output")
    create.add_argument("name", help="who or what uses it, e.g. scada or shift-a (letters, digits, _ . -)")
    create.add_argument(
        "--scope",
        required=True,
        choices=SCOPES,
        help="read: alerts, maintenance, metrics; operate: also what a shift does (acknowledge, shelve, comment, "
        "feedback); admin: also relearning baselines",
    )
    create.set_defaults(func=_reported(create_key))
    listing = actions.add_parser("list", help="the keys: name, scope, created, revoked (never a token)")
    listing.set_defaults(func=_reported(list_keys))
    revoke = actions.add_parser("revoke", help="revoke the active key of that name")
    revoke.add_argument("name")
    revoke.set_defaults(func=_reported(revoke_key))
    for action in (create, listing, revoke):
        action.add_argument(
            "--config", help="YAML config file whose api.keys_file to use (default: the embedded default)"
        )


def _reported(action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``action``, with a key file it cannot read or write told as the command's one-line error."""

    def run(args: argparse.Namespace) -> int:
        try:
            return action(args)
        except KeyFileError as exc:
            raise CommandError(str(exc)) from None

    return run


def _file(args: argparse.Namespace) -> KeyFile:
    # Absolute in every message: a relative keys_file is relative to where each command starts, and a
    # key written beside the wrong working directory protects nothing.
    return KeyFile(Path(load_settings(args.config, storage__kind="sqlite").api.keys_file).resolve())


def create_key(args: argparse.Namespace) -> int:
    keys = _file(args)
    token = keys.create(args.name, args.scope)
    print(token)
    print(
        f"key {args.name!r} (scope {args.scope}) added to {keys.path}; its token, above, is shown only now: "
        "send it as 'Authorization: Bearer <token>'",
        file=sys.stderr,
    )
    return 0


def list_keys(args: argparse.Namespace) -> int:
    keys = _file(args)
    found = keys.all_keys()
    if not found:
        print(f"no keys in {keys.path}: the API answers anyone on this machine (plantwatch run refuses other hosts)")
        return 0
    for key in found:
        state = f"revoked {key.revoked}" if key.revoked else "active"
        print(f"{key.name:24s} {key.scope:8s} created {key.created}  {state}")
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    keys = _file(args)
    revoked = keys.revoke(args.name)
    if not revoked:
        raise CommandError(f"no active key named {args.name!r} in {keys.path}")
    print(f"key {args.name!r} revoked in {keys.path}: a running service refuses it from its next request")
    return 0
