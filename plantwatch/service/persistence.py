"""Saving and restoring each asset's learned state and the maintenance trends in ``model_dir``.

They are saved together, as checkpoints (:mod:`plantwatch.service.checkpoints`), and restored from
the latest one.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from detector.base import join_state, split_state
from detector.monitor import AssetMonitor
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.checkpoints import Checkpoints
from plantwatch.service.model_store import ModelStoreError, has_state, load_state, save_state

log = logging.getLogger(__name__)

# A checkpoint's content: each file's name (an asset, or TRENDS_NAME) and its (meta, arrays).
Snapshot = dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]

# The maintenance trends' file in the model directory. MQTT topic names cannot hold U+0000, so no
# asset can be called this.
TRENDS_NAME = "\x00maintenance-trends"


class ModelPersistence:
    """Saves and restores each asset's learned state in ``model_dir`` (JSON + npz, never pickle)."""

    def __init__(self, model_dir: str) -> None:
        self.checkpoints = Checkpoints(model_dir)

    @property
    def model_dir(self) -> Path:
        """Where the latest checkpoint's files are (``model_dir`` itself before the first one)."""
        return self.checkpoints.latest.directory

    @property
    def scored_seq(self) -> int:
        """The last readings batch the latest checkpoint reflects (:mod:`plantwatch.service.reading_log`)."""
        return self.checkpoints.latest.scored_seq

    def checkpoint(
        self,
        monitors: Mapping[str, AssetMonitor],
        changed: Collection[str],
        tracker: MaintenanceTracker | None,
        scored_seq: int,
    ) -> bool:
        """Write a new generation: the ``changed`` assets' models, the trends, ``scored_seq``; the other
        assets' files are carried over. False (logged) when it could not be written; the previous one stays."""
        return self.write(self.snapshot(monitors, changed, tracker), scored_seq)

    @staticmethod
    def snapshot(
        monitors: Mapping[str, AssetMonitor], changed: Collection[str], tracker: MaintenanceTracker | None
    ) -> Snapshot:
        """Copies of the ``changed`` assets' states and of the trends, taken on the thread that owns them,
        so that another thread can write them while the monitors go on (:meth:`write`)."""
        states = {}
        for asset in changed:
            if (monitor := monitors.get(asset)) is not None:
                arrays, meta = split_state(monitor.get_state())
                states[asset] = _copied(meta, arrays)
        if tracker is not None:
            meta, arrays = tracker.get_state()
            states[TRENDS_NAME] = _copied(meta, arrays)
        return states

    def write(self, snapshot: Snapshot, scored_seq: int) -> bool:
        """A new generation of ``snapshot``'s files and ``scored_seq``; False (logged) when it could not be
        written (the previous one stays)."""
        building = self.checkpoints.begin()
        try:
            for name, (meta, arrays) in snapshot.items():
                save_state(building, name, meta, arrays)
            self.checkpoints.commit(building, scored_seq)
            return True
        except Exception:  # a full disk must not stop detection; the next checkpoint tries again
            log.exception("cannot write a checkpoint in %s; the previous one stays", self.checkpoints.root)
            self.checkpoints.abandon(building)
            return False

    def save(self, monitor: AssetMonitor) -> None:
        """Save one model into the latest checkpoint (outside the service: tests and tools)."""
        arrays, meta = split_state(monitor.get_state())
        try:
            save_state(self.model_dir, monitor.asset, meta, arrays)
        except OSError as exc:
            log.error("cannot save the model of %s in %s: %s", monitor.asset, self.model_dir, exc)

    def save_trends(self, tracker: MaintenanceTracker) -> None:
        """Save the trends into the latest checkpoint (outside the service: tests and tools)."""
        try:
            meta, arrays = tracker.get_state()
            save_state(self.model_dir, TRENDS_NAME, meta, arrays)
        except Exception:
            log.exception("cannot save the maintenance trends in %s", self.model_dir)

    def restore_trends(self, tracker: MaintenanceTracker) -> None:
        try:
            with self.checkpoints.lock:
                saved = load_state(self.model_dir, TRENDS_NAME)
            if saved is None:
                return
            tracker.set_state(*saved)
            log.info("restored the maintenance trends of %d asset(s) from %s", len(saved[0]["assets"]), self.model_dir)
        except Exception as exc:  # a corrupt or foreign file: the trends start again, detection goes on
            log.warning("not restoring the maintenance trends, starting them afresh: %s: %s", type(exc).__name__, exc)

    def has(self, asset: str) -> bool:
        try:
            with self.checkpoints.lock:
                return has_state(self.model_dir, asset)
        except (ModelStoreError, OSError):
            return False

    def restore(self, monitor: AssetMonitor) -> bool:
        """Restore ``monitor`` from its saved model; False (and a fresh monitor) when that failed.

        Any failure — a corrupt or truncated file, a foreign one, a model of other settings or other
        sensors — means a new baseline, never an asset left unmonitored.
        """
        try:
            with self.checkpoints.lock:  # not while a checkpoint's commit deletes the generation read
                saved = load_state(self.model_dir, monitor.asset)
            if saved is None:
                return True
            meta, arrays = saved
            monitor.set_state(join_state(arrays, meta))
            log.info("restored the model of %s from %s (warm: %s)", monitor.asset, self.model_dir, monitor.is_warm)
            return True
        except Exception as exc:
            log.warning(
                "not restoring the model of %s, learning a new baseline: %s: %s", monitor.asset, type(exc).__name__, exc
            )
            monitor.reset()
            return False


def _copied(meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Deep copies: a state may share lists and buffers with the live monitor, which changes them in place."""
    return copy.deepcopy(meta), {name: np.array(value, copy=True) for name, value in arrays.items()}
