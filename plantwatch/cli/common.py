"""What every command shares: the log-level flag, and its files checked before the work, naming the flag."""

from __future__ import annotations

import argparse
from pathlib import Path

from plantwatch.paths import why_not_readable, why_not_writable_file, why_not_writable_folder

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class CommandError(Exception):
    """A bad argument: the message is one line naming the flag or argument; ``plantwatch`` exits 2."""


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)


def input_file(name: str, path: str) -> str:
    """``path``, which ``name`` (``--flag`` or ``ARGUMENT``) gave; CommandError when it cannot be read."""
    _refuse(name, path, why_not_readable(Path(path)))
    return path


def output_file(name: str, path: str) -> str:
    """``path`` to write a file to; CommandError (naming ``name``) before the work when it cannot be."""
    _refuse(name, path, why_not_writable_file(Path(path)))
    return path


def output_folder(name: str, path: str) -> str:
    """``path`` to write files into, created if missing; CommandError naming ``name`` when it cannot be."""
    _refuse(name, path, why_not_writable_folder(Path(path)))
    return path


def _refuse(name: str, path: str, problem: str | None) -> None:
    if problem is not None:
        raise CommandError(f"{name} {path}: {problem}")
