"""detector.chunks: runs of assets within a row budget."""

from __future__ import annotations

from detector.chunks import runs_within


def test_runs_keep_order_hold_the_budget_and_leave_none_alone_at_the_end() -> None:
    rows = [500, 500, 500, 3000, 10, 0, 0]
    runs = runs_within(range(len(rows)), rows, 1024)
    assert [i for run in runs for i in run] == list(range(len(rows)))  # every member once, in order
    assert runs == [[0, 1], [2], [3], [4, 5, 6]]  # one over the budget stands alone
    assert runs_within([0, 1, 2], [5, 5, 2000], 1024) == [[0, 1, 2]]  # a lone last one joins the run before
    assert runs_within([], [], 1024) == []
    assert runs_within([3, 7], [0, 0, 0, 9, 0, 0, 0, 9], 1024) == [[3, 7]]
