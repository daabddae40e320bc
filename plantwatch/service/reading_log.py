"""The readings log: every batch written to storage, kept on local disk until a checkpoint covers it.

Readings are acknowledged to the broker once they are stored, and scored a moment later: a crash in
between used to lose their verdicts (171-177 rows per asset after ``kill -9``), since the broker had
forgotten them and nothing re-read the TSDB. So the writer appends each stored batch here before it
acknowledges, numbered in order; the detector's checkpoint records the last number it had scored;
after a crash the batches after that number are scored again (:meth:`ReadingLog.after`). Reading the
TSDB back instead would need a query language per store (Flux, PromQL) and its credentials to read.

A record is ``length (4 bytes) | crc32 (4 bytes) | body``, the body a list of ``(asset, ts_ns, values,
tags)`` in :mod:`marshal` format 4: it builds plain values only (no code runs, unlike pickle), and
logging costs the writer 1.4 µs per 8-sensor reading where JSON cost 15 µs (``bench/recovery_cost.py``;
the service spends about 130 µs of CPU on a reading in all). A process killed mid-append leaves a torn
last record, which reading stops at: that batch was never acknowledged, and the broker redelivers it.
Appends reach the operating system at once (a killed process loses nothing); they are synced to disk
at each checkpoint, so a power cut loses at most the verdicts of one checkpoint interval, never a
reading (those are in the TSDB).

Segments are named after their first record's number and deleted once a checkpoint covers them. The
log keeps its segments' names and the offset of each record it appended in memory (8 bytes a batch), so
reading back a batch the detector was too far behind to take from its queue seeks straight to it, and
stops at it. Listing the folder, walking the segment's headers from its start and decoding the next
record too had made a batch read back on its own cost twice as much as one read in a run: 5.4-5.6 µs a
reading against 2.7-2.8, now 2.2-2.4 (``python bench/recovery_cost.py --assets 10``).
"""

from __future__ import annotations

import bisect
import logging
import marshal
import os
import struct
import threading
import zlib
from array import array
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ingest.messages import Reading

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 * 1024 * 1024  # a new segment after this many bytes (and at each checkpoint)
_HEADER = struct.Struct("<II")
_MARSHAL = 4  # the marshal format of every record: each Python since 3.4 reads and writes it
_SUFFIX = ".log"


class ReadingLog:
    """Numbered batches of readings, appended by the writer and read back after a crash."""

    def __init__(self, directory: str | os.PathLike[str], segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        # The first batch number of each segment on disk, in order, and the offsets of the records this
        # process appended to a segment (its batches first, first + 1, ...), by that first number.
        self._firsts = sorted(int(p.stem) for p in self.directory.iterdir() if p.suffix == _SUFFIX and p.stem.isdigit())
        self._offsets: dict[int, array[int]] = {}
        self.last_seq = self._last_seq(self._path(self._firsts[-1])) if self._firsts else 0
        self._file: BinaryIO | None = None
        self._file_first = 0

    def append(self, readings: Sequence[Reading]) -> int:
        """Log one stored batch; its number (numbers increase by one)."""
        body = marshal.dumps([(r.asset, r.ts_ns, _plain(r.values), _plain(r.tags)) for r in readings], _MARSHAL)
        with self._lock:
            seq = self.last_seq + 1
            file = self._open_for(seq)
            self._offsets[self._file_first].append(file.tell())
            file.write(_HEADER.pack(len(body), zlib.crc32(body)) + body)
            file.flush()  # to the operating system: a killed process loses nothing
            self.last_seq = seq
            return seq

    def continue_after(self, seq: int) -> None:
        """Number the next batch above ``seq``: a checkpoint covering batch ``seq`` may have deleted every
        segment (after a graceful stop), and numbers starting again at 1 would read as scored already."""
        with self._lock:
            self.last_seq = max(self.last_seq, seq)

    def sync(self) -> None:
        """Make what was appended survive a power cut (at each checkpoint)."""
        with self._lock:
            if self._file is not None:
                os.fsync(self._file.fileno())

    def discard_through(self, seq: int) -> None:
        """A checkpoint covers the batches up to ``seq``: delete the segments holding only those."""
        with self._lock:
            if self._file is not None and self.last_seq <= seq:
                self._file.close()  # the next append starts a new segment: this one can go
                self._file = None
            kept = []
            for i, first in enumerate(self._firsts):
                ends_before = self._firsts[i + 1] if i + 1 < len(self._firsts) else self.last_seq + 1
                open_now = self._file is not None and first == self._file_first
                if ends_before - 1 <= seq and not open_now:
                    self._path(first).unlink(missing_ok=True)
                    self._offsets.pop(first, None)
                else:
                    kept.append(first)
            self._firsts = kept

    def after(self, seq: int, through: int | None = None) -> Iterator[tuple[int, tuple[Reading, ...]]]:
        """The logged batches numbered above ``seq`` (and up to ``through``), in order; a torn last record
        ends them. While the writer appends, pass ``through=last_seq``: the record after it may be half
        written."""
        with self._lock:  # the writer may start a segment meanwhile
            firsts = self._firsts[max(bisect.bisect_right(self._firsts, seq + 1) - 1, 0) :]
            starts = [self._start(first, seq + 1) for first in firsts]
        for first, (start, offset) in zip(firsts, starts, strict=True):
            for number, readings in _records(self._path(first), start, offset, skip_through=seq, through=through):
                yield number, readings
                if number == through:
                    return  # later segments hold later batches only

    def _start(self, first: int, wanted: int) -> tuple[int, int]:
        """Where to start reading segment ``first`` for batch ``wanted``: a batch number and its offset.
        Segments an earlier process wrote are read from their start."""
        offsets = self._offsets.get(first)
        if offsets is None or wanted <= first:
            return first, 0
        k = min(wanted - first, len(offsets) - 1)  # len - 1: the last record appended, read or torn
        return (first + k, offsets[k]) if k >= 0 else (first, 0)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open_for(self, seq: int) -> BinaryIO:
        if self._file is not None and self._file.tell() >= self.segment_bytes:
            self._file.close()
            self._file = None
        if self._file is None:
            # "wb": a segment of this name can only hold a torn first record, from a crash while appending.
            self._file = open(self._path(seq), "wb")  # noqa: SIM115 (kept open)
            self._file_first = seq
            self._offsets[seq] = array("q")
            if not self._firsts or self._firsts[-1] != seq:  # a torn first record's segment is reused
                self._firsts.append(seq)
        return self._file

    def _path(self, first: int) -> Path:
        return self.directory / f"{first:016d}{_SUFFIX}"

    def _last_seq(self, path: Path) -> int:
        last = _first_seq(path) - 1
        for number, _ in _records(path):  # every record is read and checked: the last may be torn
            last = number
        return last


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return mapping if type(mapping) is dict else dict(mapping)  # marshal takes exact dicts only


def _first_seq(path: Path) -> int:
    return int(path.stem)


def _records(
    path: Path, number: int | None = None, offset: int = 0, skip_through: int = 0, through: int | None = None
) -> Iterator[tuple[int, tuple[Reading, ...]]]:
    """A segment's records from the one numbered ``number`` at ``offset`` (default: its first), with
    their numbers, those up to ``skip_through`` passed over unread, up to ``through``; stops at a torn
    or corrupt record (logged)."""
    number = _first_seq(path) if number is None else number
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:  # a checkpoint written meanwhile covered it all: nothing of it is wanted
        return
    with file:
        file.seek(offset)
        while (through is None or number <= through) and (header := file.read(_HEADER.size)):
            if number <= skip_through and len(header) == _HEADER.size:
                file.seek(_HEADER.unpack(header)[0], os.SEEK_CUR)
                number += 1
                continue
            body = _body(file, header)
            if body is None:
                log.warning("%s: a torn record after batch %d (a crash while appending)", path, number - 1)
                return
            yield number, tuple(Reading(asset, ts, values, tags) for asset, ts, values, tags in marshal.loads(body))
            number += 1


def _body(file: BinaryIO, header: bytes) -> bytes | None:
    """The record's body, or None when it is torn or its checksum does not match."""
    if len(header) < _HEADER.size:
        return None
    length, crc = _HEADER.unpack(header)
    body = file.read(length)
    return body if len(body) == length and zlib.crc32(body) == crc else None
