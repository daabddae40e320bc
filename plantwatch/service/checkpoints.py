"""Checkpoints: every asset's model and the maintenance trends, written together as one generation.

Models used to be saved one by one (when learned or refitted) and the trends every 5 minutes, so a
crash restored parts from different instants: 3 of 4 crashed assets then opened maintenance alerts
an uninterrupted run never opened. A generation is a directory under ``<model_dir>/checkpoints``
holding every asset's files, the trends, and ``manifest.json`` with the number of the last readings
batch they reflect (:mod:`plantwatch.service.reading_log`). It is built under a temporary name and
renamed into place, so a restart sees the whole of a generation or none of it. Files of assets that
did not change are hard-linked from the previous generation, not copied.

A model directory from before checkpoints holds its files at the top level: it is read as
generation 0, batch 0, and carried into the first generation.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
_CARRIED = (".state", ".json", ".npz")  # the model store's files (model_store.py; .json and .npz: format 1)


@dataclass(frozen=True, slots=True)
class Generation:
    """A complete checkpoint: its directory and the last readings batch its state reflects."""

    number: int
    directory: Path
    scored_seq: int


class Checkpoints:
    """The generations in one model directory: the latest to read, and a new one to write."""

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        self.model_dir = Path(model_dir)
        self.root = self.model_dir / CHECKPOINTS
        self.latest = self._find_latest()
        # Held by readers of the latest generation's files and by a commit, which deletes the older
        # generations: a checkpoint is written on its own thread while the detector restores models.
        self.lock = threading.Lock()

    def begin(self) -> Path:
        """A new generation's directory, holding links to the latest one's files: overwrite what changed."""
        self.root.mkdir(parents=True, exist_ok=True)
        building = self.root / f".building-{self.latest.number + 1}"
        shutil.rmtree(building, ignore_errors=True)  # left by a crash while building
        building.mkdir()
        for path in self.latest.directory.iterdir() if self.latest.directory.is_dir() else ():
            if path.suffix in _CARRIED and path.name != MANIFEST and not path.name.startswith("."):
                _carry(path, building / path.name)
        return building

    def commit(self, building: Path, scored_seq: int) -> Generation:
        """Make ``building`` the latest generation (one rename), then delete the older ones."""
        number = self.latest.number + 1
        manifest = {"generation": number, "scored_seq": scored_seq}
        with open(building / MANIFEST, "w", encoding="utf-8") as file:
            json.dump(manifest, file)
            file.flush()
            os.fsync(file.fileno())
        _fsync_dir(building)
        final = self.root / f"{number:012d}"
        with self.lock:
            os.rename(building, final)
            _fsync_dir(self.root)
            self.latest = Generation(number, final, scored_seq)
            for old in self.root.iterdir():
                if old != final and old.name.isdigit():
                    shutil.rmtree(old, ignore_errors=True)
        return self.latest

    def abandon(self, building: Path) -> None:
        shutil.rmtree(building, ignore_errors=True)

    def _find_latest(self) -> Generation:
        if self.root.is_dir():
            for directory in sorted((d for d in self.root.iterdir() if d.name.isdigit()), reverse=True):
                try:
                    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
                    return Generation(int(manifest["generation"]), directory, int(manifest["scored_seq"]))
                except (OSError, ValueError, KeyError, TypeError) as exc:  # never renamed into place whole
                    log.warning("ignoring checkpoint %s: %s: %s", directory, type(exc).__name__, exc)
        return Generation(0, self.model_dir, 0)


def _carry(source: Path, target: Path) -> None:
    """A hard link (free); a copy where the file system has none (some network and mounted volumes)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
