"""Waiting on a condition (never on a fixed sleep) in tests that watch real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def interrupt_when(proc: subprocess.Popen[bytes], condition: Callable[[], bool], timeout_s: float, what: str) -> int:
    """Send SIGINT (Ctrl-C) to ``proc`` once ``condition`` holds; its exit code. Killed if it does not exit."""
    try:
        wait_until(lambda: condition() or proc.poll() is not None, timeout_s, what)
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)


def blocked_reading(fifo: Path, proc: subprocess.Popen[bytes], writers: list[int]) -> bool:
    """Whether ``proc`` has ``fifo`` open for reading and is asleep in its read.

    A non-blocking open for writing succeeds only once a reader has it open (ENXIO until then); the
    write end is appended to ``writers``, for the caller to close. Asleep matters for a signal: one
    that arrives while the reader still runs may be handled before it enters read(2), which then
    waits for ever with the KeyboardInterrupt pending; a sleeping main thread gets it and wakes.
    """
    if not writers:
        try:
            writers.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return False
    if proc.poll() is not None:
        return False
    stat = Path(f"/proc/{proc.pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "S"  # the state, after the command name in parentheses
