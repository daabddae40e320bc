"""Progress bars for long CLI work (big backtests and replays): rate and time left on a terminal,
nothing at all when stderr is not one (a pipe, a log file, CI), so scripted output stays the same.

tqdm draws them on stderr; the work itself only calls back with how much it has done, so the rooms
below the CLI (``plantwatch/offline``, ``ingest``) import no progress library.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

Progress = Callable[[int, int], None]  # called with how many more rows (or frames) are done, of how many


@contextmanager
def progress_bar(what: str, unit: str) -> Iterator[Progress]:
    """A bar on a terminal; yields the function the work calls with each step and the total, which
    the work may learn only once it has begun (a backtest reads its log first)."""
    with tqdm(
        total=None,
        desc=what,
        unit=unit,
        unit_scale=True,
        disable=not sys.stderr.isatty(),
        leave=False,  # the command's own summary line follows
        dynamic_ncols=True,
        mininterval=0.5,
        file=sys.stderr,
    ) as bar:

        def step(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.update(done)
                bar.refresh()  # draw the total now, whatever the minimum interval between redraws
                return
            bar.update(done)

        yield step


def tracked(items: Sequence[T], what: str, unit: str) -> Iterator[T]:
    """``items`` one by one, with a bar of them on a terminal (a benchmark over many files)."""
    with progress_bar(what, unit) as step:
        for item in items:
            yield item
            step(1, len(items))
