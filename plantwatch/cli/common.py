"""What every command shares: the log-level flag, and its files checked before the work, naming the flag."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from plantwatch.paths import why_not_readable, why_not_writable_file, why_not_writable_folder

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class CommandError(Exception):
    """A bad argument: the message is one line naming the flag or argument; ``plantwatch`` exits 2."""


def counted(n: int, noun: str) -> str:
    """``1 alert``, ``2 alerts``: a count with its noun (regular plurals only)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)


def positive_number(text: str) -> float:
    """An argparse type: a finite number above 0 (argparse names the flag in its error)."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def share(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (a coverage, a quantile)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (0.8 = 80 %), got {text!r}")
    return value


def counting_number(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def seed_number(text: str) -> int:
    """An argparse type: a random seed, 0 to 2**32 - 1 (what numpy and scikit-learn accept)."""
    value = _whole(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 4294967295, got {text!r}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    value = _whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 (any free one) to 65535, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def input_file(name: str, path: str) -> str:
    """``path``, which ``name`` (``--flag`` or ``ARGUMENT``) gave; CommandError when it cannot be read."""
    _refuse(name, path, why_not_readable(Path(path)))
    return path


def output_file(name: str, path: str) -> str:
    """``path`` to write a file to; CommandError (naming ``name``) before the work when it cannot be."""
    _refuse(name, path, why_not_writable_file(Path(path)))
    return path


def png_file(name: str, path: str) -> str:
    """``output_file`` for a picture: the name must end in .png (what is written), checked before the work."""
    if Path(path).suffix.lower() != ".png":
        raise CommandError(f"{name} {path}: give a file name ending in .png (the picture is a PNG)")
    return output_file(name, path)


def output_folder(name: str, path: str) -> str:
    """``path`` to write files into, created if missing; CommandError naming ``name`` when it cannot be."""
    _refuse(name, path, why_not_writable_folder(Path(path)))
    return path


def _refuse(name: str, path: str, problem: str | None) -> None:
    if problem is not None:
        raise CommandError(f"{name} {path}: {problem}")
