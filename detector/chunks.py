"""Work on many assets at once, in runs that bound the arrays it makes."""

from __future__ import annotations

from collections.abc import Sequence


def runs_within(members: Sequence[int], rows: Sequence[int], budget: int) -> list[list[int]]:
    """``members`` in runs of consecutive ones holding at most ``budget`` rows together (``rows[i]``
    each), or one alone that holds more; a lone last member joins the run before it.

    Worked out together, a thousand assets' rows make arrays of several MB a batch, which the
    allocator keeps once freed (glibc raises its mmap threshold to the largest freed block): runs of
    about a thousand rows keep the calls few and the arrays small.
    """
    runs: list[list[int]] = []
    held = 0
    for i in members:
        if not runs or (held > 0 and held + rows[i] > budget):
            runs.append([])
            held = 0
        runs[-1].append(i)
        held += rows[i]
    if len(runs) > 1 and len(runs[-1]) == 1:
        runs[-2].extend(runs.pop())
    return runs
