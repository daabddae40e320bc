"""Operator feedback on an asset's alerts (``POST /assets/{asset}/feedback``), applied by the detector thread.

A monitor is only ever touched by the detector thread, so the API thread queues a request with a
future and waits for its answer; the detector thread applies queued requests at the top of every
loop (at most ~0.2 s later, whether or not readings arrive) and at shutdown.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Final, Literal

from detector.monitor import AssetMonitor

FALSE_ALARM: Final = "false_alarm"
TRUE_FAULT: Final = "true_fault"
OperatorVerdict = Literal["false_alarm", "true_fault"]
Applied = Callable[[AssetMonitor, OperatorVerdict, int], None]  # (monitor, verdict, rows) once applied


@dataclass(frozen=True)
class FeedbackRequest:
    asset: str
    verdict: OperatorVerdict
    start_ns: int
    end_ns: int
    answer: Future[int] = field(default_factory=Future)  # rows learned or dropped; ValueError when it cannot


class FeedbackRequests:
    """The queue of feedback requests between the API thread and the detector thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[FeedbackRequest] = queue.SimpleQueue()

    def submit(self, asset: str, verdict: OperatorVerdict, start_ns: int, end_ns: int) -> Future[int]:
        request = FeedbackRequest(asset, verdict, start_ns, end_ns)
        self._queue.put(request)
        return request.answer

    def apply(self, monitor_of: Callable[[str], AssetMonitor], applied: Applied) -> None:
        """Apply every queued request to ``monitor_of(asset)``; ``applied(monitor, verdict, rows)`` after each."""
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if not request.answer.set_running_or_notify_cancel():
                continue  # the caller gave up waiting and was told so: applying it now would surprise them
            try:
                monitor = monitor_of(request.asset)
                if request.verdict == FALSE_ALARM:
                    rows = monitor.learn_false_alarm(request.start_ns, request.end_ns)
                else:
                    rows = monitor.mark_true_fault(request.start_ns, request.end_ns)
                applied(monitor, request.verdict, rows)
            except Exception as exc:  # the caller is answered in every case, and the thread goes on
                request.answer.set_exception(exc)
                continue
            request.answer.set_result(rows)
