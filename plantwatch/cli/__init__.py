"""The `plantwatch` command line: one module per command, each adding its own subparser.

A command module has ``add_parser(subparsers)``, which registers the command and sets ``func`` to
the function that runs it with the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from plantwatch import __version__

# In the order a newcomer meets them: try it, write a config, check it, run it; then the offline tools.
# Imported by main(), one command's modules at a time, not with this package: a command pays only for
# what it uses (`plantwatch config` loads no numpy, no web framework).
COMMANDS = ("demo", "config", "check", "keys", "run", "replay", "backtest", "rul", "alerts")


def main(argv: Sequence[str] | None = None) -> int:
    from plantwatch.cli.common import CommandError
    from plantwatch.settings import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C: what the command had done is said by the command, if anything
        print("plantwatch: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, CommandError, ValueError) as exc:
        print(f"plantwatch: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `plantwatch check | head -2`: the reader has left; stop quietly
        # The usual recipe (https://docs.python.org/3/library/signal.html#note-on-sigpipe): stdout to
        # /dev/null, or Python reports the broken pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the commands name the flag where they know it; this names at least the file
        given = list(sys.argv[1:] if argv is None else argv)
        print(f"plantwatch: {_flag_of(exc, parser, given)}{os_error_line(exc)}", file=sys.stderr)
        return 2


def _flag_of(exc: OSError, parser: argparse.ArgumentParser, given: list[str]) -> str:
    """``"--out "`` when the failing file is the one a flag given on the command line named, else ``""``.
    (The checks before the work pass where only trying tells: ``/proc`` looks writable to root.)

    The flag whose value is the file itself; else one whose value is a folder the file lies in (a
    folder flag such as ``--workdir`` or ``rul fit --out`` fails on a file inside it)."""
    if not isinstance(exc.filename, (str, bytes, os.PathLike)):  # None, or a file descriptor
        return ""
    failed = Path(os.fsdecode(exc.filename)).absolute()
    values = _given_values(parser, given)
    for match in (lambda path: path == failed, lambda path: path in failed.parents and path.is_dir()):
        for flag, value in values:
            if match(Path(value).absolute()):
                return flag + " "
    return ""


def _given_values(parser: argparse.ArgumentParser, given: list[str]) -> list[tuple[str, str]]:
    """``(flag, value)`` of every option taking a value on the command line, ``--flag V`` or ``--flag=V``."""
    options = {opt for action in _all_actions(parser) if action.nargs != 0 for opt in action.option_strings}
    pairs = []
    for i, token in enumerate(given):
        flag, sep, value = token.partition("=")
        if sep and flag in options:
            pairs.append((flag, value))
        elif token in options and i + 1 < len(given):
            pairs.append((token, given[i + 1]))
    return pairs


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions = []
    for action in parser._actions:  # argparse has no public walk of a parser's subcommands
        actions.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += _all_actions(sub)
    return actions


def os_error_line(exc: OSError) -> str:
    """``/nope.csv: no such file`` for ``[Errno 2] No such file or directory: '/nope.csv'``."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    path = Path(os.fsdecode(exc.filename))
    if isinstance(exc, FileNotFoundError):
        reason = "no such file" if path.parent.is_dir() else f"no such folder {path.parent}"
    elif isinstance(exc, IsADirectoryError):
        reason = "is a folder, not a file"
    elif isinstance(exc, PermissionError):
        reason = "permission denied"
    return f"{path}: {reason}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantwatch", description="Watch plant equipment: MQTT readings → InfluxDB → anomaly alerts."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in COMMANDS:
        importlib.import_module(f"plantwatch.cli.{command}").add_parser(sub)
    return parser
