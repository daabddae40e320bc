"""Assets that went quiet leave memory; their checkpointed model brings them back when they return.

A plant has machines that stop for a weekend, and a publisher can make up assets: each warm asset
holds its model, alignment window and an hour of chart rows (about 1 MB). With ``detector.model_dir``
set, an asset that sent nothing for ``detector.evict_idle_after_s`` (wall clock) is dropped from
memory once a checkpoint holds its latest state; its next reading restores it from that checkpoint,
as a restart would, so its verdicts are those it would have had in memory. ``GET /assets`` and
``/healthz`` keep showing it as it was when it left (:class:`Departed`).

The detector thread moves assets in and out of memory; the API threads read :meth:`IdleAssets.snapshot`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from detector.monitor import AssetMonitor


@dataclass(frozen=True, slots=True)
class Departed:
    """What the API shows of an asset out of memory: its ``GET /assets`` view and ``/healthz`` baseline
    entry as they were when it left."""

    view: dict[str, Any]
    baseline: dict[str, Any]


class IdleAssets:
    """When each asset last sent readings, which ones are idle, and the departed ones' views."""

    def __init__(self, after_s: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s  # None: assets stay in memory
        self.clock = clock
        self._seen_at: dict[str, float] = {}
        self.departed: dict[str, Departed] = {}
        # Held while an asset moves between ``monitors`` and ``departed``, so that a snapshot has it in one.
        self._moving = threading.Lock()

    def seen(self, asset: str) -> None:
        self._seen_at[asset] = self.clock()

    def due(self, dirty: Collection[str]) -> list[str]:
        """The assets idle for ``after_s`` whose state is checkpointed (not in ``dirty``)."""
        if self.after_s is None:
            return []
        since = self.clock() - self.after_s
        return [a for a, at in self._seen_at.items() if at <= since and a not in dirty]

    def move_out(self, monitors: dict[str, AssetMonitor], asset: str, departed: Departed) -> None:
        with self._moving:
            del monitors[asset]
            self.departed[asset] = departed
        self._seen_at.pop(asset, None)

    def move_in(self, monitors: dict[str, AssetMonitor], monitor: AssetMonitor) -> None:
        """A new asset, or one back (its readings came, or an operator's request reached it)."""
        with self._moving:
            monitors[monitor.asset] = monitor
            self.departed.pop(monitor.asset, None)
        self.seen(monitor.asset)

    def holds(self, monitors: dict[str, AssetMonitor], asset: str) -> bool:
        """Whether ``asset`` is in memory or out of it (for the API threads)."""
        with self._moving:
            return asset in monitors or asset in self.departed

    def snapshot(self, monitors: dict[str, AssetMonitor]) -> tuple[dict[str, AssetMonitor], dict[str, Departed]]:
        """Copies of the assets in memory and of those out of it (for the API threads)."""
        with self._moving:
            return dict(monitors), dict(self.departed)
