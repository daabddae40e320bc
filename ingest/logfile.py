"""Read a sensor log (CSV with a header) into arrays for the backtest and the replay.

One time column, any number of numeric sensor columns, optional label columns that are kept
apart so they can never reach a model. Standard library ``csv`` plus numpy; no pandas.

Every problem is one ``ValueError`` line that names the file (and the line, row or column when one is
at fault), since a newcomer sees it as ``plantwatch: <message>``.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import numpy as np

from ingest.timestamps import INT64_MAX, INT64_MIN, NS_PER_S, OUTSIDE_INT64, TimeParseError, epoch_unit_ns, iso_to_ns

TIME_COLUMN_CANDIDATES = ("timestamp", "datetime", "time")
SNIFFED_DELIMITERS = (",", ";", "\t")
# Columns named like these (case-insensitive) hold labels, not readings: a model that learned one as a
# sensor would treat the fault flag as normal. They are left out unless declared or kept.
LABEL_LIKE_NAMES = frozenset({"anomaly", "label", "changepoint", "is_anomaly"})
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class SensorLog:
    """A parsed sensor log; row ``i`` of every array belongs to data line ``i``."""

    timestamps_ns: np.ndarray  # int64, UTC epoch nanoseconds
    timestamp_text: list[str]  # the time cells as written in the file, for output
    sensors: tuple[str, ...]
    values: np.ndarray  # float64, shape (n, len(sensors)); NaN where a cell was not a number
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # float64 per label column
    left_out: tuple[str, ...] = ()  # columns named like labels, not declared: neither sensors nor labels

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def head(self, n: int) -> SensorLog:
        """The first ``n`` rows (used to check that results are causal)."""
        return SensorLog(
            self.timestamps_ns[:n].copy(),
            self.timestamp_text[:n],
            self.sensors,
            self.values[:n].copy(),
            {k: v[:n].copy() for k, v in self.labels.items()},
            self.left_out,
        )

    def sensors_without_numbers(self) -> list[str]:
        """Sensor columns with no finite number in any row (all text or empty): they never yield a reading."""
        if not len(self):
            return []
        has_number = np.isfinite(self.values).any(axis=0)
        return [name for name, ok in zip(self.sensors, has_number.tolist(), strict=True) if not ok]


def read_sensor_log(
    path: str | Path,
    *,
    time_column: str | None = None,
    label_columns: Sequence[str] = (),
    ignore_columns: Sequence[str] = (),
    include: Sequence[str] = (),
    delimiter: str | None = None,
) -> SensorLog:
    """Parse a CSV sensor log.

    * ``delimiter``: ``,``, ``;`` or a tab is sniffed from the header line unless given.
    * ``time_column``: the first of ``timestamp``, ``datetime``, ``time`` (case-insensitive) unless
      given. Times are ISO-8601 / ``YYYY-MM-DD hh:mm:ss`` (naive = UTC) or epoch numbers (unit
      guessed from magnitude: s, ms, µs or ns).
    * ``label_columns``: removed from the sensors, returned in ``labels``; their cells must be numbers
      (0 = normal) or empty.
    * ``ignore_columns``: removed from the sensors and not read at all.
    * Columns named like labels (:data:`LABEL_LIKE_NAMES`) that are not declared above are left out
      too and named in ``left_out``, unless listed in ``include``, which keeps them as sensors.
    * Sensor cells that are not numbers become NaN. CRLF line ends and a UTF-8 BOM are fine.

    Raises ``ValueError`` naming the file for: a file that is not UTF-8 text, an empty file, a bad
    header (no separator, duplicate or empty names), a missing time column, unknown columns, rows
    whose cell count differs from the header, unparseable times and label cells that are not numbers.
    """
    text = _read_text(path)
    with io.StringIO(text, newline="") as fh:  # newline="": \n, \r\n and \r all end the header line
        header_line = fh.readline()
        body = fh.read()
    delim = delimiter or sniff_delimiter(header_line)
    header = [name.strip() for name in next(csv.reader([header_line], delimiter=delim), [])]
    _check_header(header, path)
    columns = _Columns(header, path, time_column, label_columns, ignore_columns, include)
    numeric_idx = columns.sensors + columns.labels
    try:
        parsed = _parse_fast(body, delim, len(header), columns.time, numeric_idx)
        if parsed is None:
            parsed = _parse_csv(body, delim, header, columns)
        time_text, numeric = parsed
        timestamps_ns = parse_times_ns(time_text)
    except RowError as exc:  # said as the row's line in the file, as every other problem of a row is
        raise ValueError(f"{path}: line {_line_of(body, delim, exc.row)}: {exc.problem}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    n_sensors = len(columns.sensors)
    return SensorLog(
        timestamps_ns=timestamps_ns,
        timestamp_text=time_text,
        sensors=tuple(header[i] for i in columns.sensors),
        values=np.ascontiguousarray(numeric[:, :n_sensors]),
        labels={header[i]: numeric[:, n_sensors + j].copy() for j, i in enumerate(columns.labels)},
        left_out=tuple(header[i] for i in columns.left_out),
    )


def sniff_delimiter(header_line: str) -> str:
    """The most frequent of ``,`` ``;`` and tab in the header line (``,`` when none is there)."""
    counts = {d: header_line.count(d) for d in SNIFFED_DELIMITERS}
    return max(SNIFFED_DELIMITERS, key=lambda d: counts[d])


def left_out_notice(path: str | Path, left_out: Sequence[str], how_to_keep: str) -> str | None:
    """One line naming the label-like columns left out (``SensorLog.left_out``) and how to keep one; None if none."""
    if not left_out:
        return None
    return f"note: {path}: left out {', '.join(left_out)}: named like labels, so not read as sensors; {how_to_keep}"


# -- file and header -----------------------------------------------------------------------------


def _read_text(path: str | Path) -> str:
    """The file as text, or a one-line error naming it when it is no UTF-8 text."""
    raw = Path(path).read_bytes()
    if not raw.strip():
        raise ValueError(f"{path}: empty file; expected a header line (time and sensor names) and data rows")
    if raw.startswith(_UTF16_BOMS):
        raise ValueError(f'{path}: UTF-16 text, not a UTF-8 CSV; save it as UTF-8 ("CSV UTF-8" in spreadsheets)')
    bom = len(_UTF8_BOM) if raw.startswith(_UTF8_BOM) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        raise ValueError(
            f"{path}: not a UTF-8 CSV text (byte 0x{raw[offset]:02x} at offset {offset}); "
            "if it is text in another encoding, save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise ValueError(f"{path}: not a CSV text (it holds NUL bytes)")
    return text


def _check_header(header: list[str], path: str | Path) -> None:
    if not any(header):
        raise ValueError(f"{path}: the first line is empty; it must be the header (time and sensor names)")
    if len(header) == 1:
        raise ValueError(
            f"{path}: the header has one column {header[0]!r}; expected a time column and sensor columns "
            f"separated by ',', ';' or a tab"
        )
    unnamed = [i + 1 for i, name in enumerate(header) if not name]
    if unnamed:
        raise ValueError(f"{path}: column(s) {unnamed} have no name in the header; name them or delete them")
    dupes = sorted(name for name, count in Counter(header).items() if count > 1)
    if dupes:
        raise ValueError(f"{path}: duplicate column names {dupes}")


class _Columns:
    """Which header column is the time, which are sensors, labels, ignored or left out (indices)."""

    def __init__(
        self,
        header: list[str],
        path: str | Path,
        time_column: str | None,
        label_columns: Sequence[str],
        ignore_columns: Sequence[str],
        include: Sequence[str],
    ) -> None:
        self._header = header
        self._path = path
        self.time = self._time_index(time_column)
        self.labels = self._indices(label_columns, "label column(s)", "--label-column")
        ignored = self._indices(ignore_columns, "column(s) to leave out", "--label-column")
        kept = set(self._indices(include, "column(s) to include", "--include"))
        both = sorted(header[i] for i in kept & {*self.labels, *ignored})
        if both:
            raise ValueError(f"{path}: {both} cannot be left out and included as sensors at once")
        declared = {self.time, *self.labels, *ignored}
        self.left_out = [
            i for i, name in enumerate(header) if name.lower() in LABEL_LIKE_NAMES and i not in declared | kept
        ]
        self.sensors = [i for i in range(len(header)) if i not in declared and i not in self.left_out]
        if not self.sensors:
            raise ValueError(f"{path}: no sensor columns; columns are {header}")

    def _time_index(self, time_column: str | None) -> int:
        header = self._header
        if time_column is not None:
            if time_column not in header:
                raise ValueError(f"{self._path}: time column {time_column!r} not found; columns are {header}")
            return header.index(time_column)
        lowered = [h.lower() for h in header]
        for candidate in TIME_COLUMN_CANDIDATES:
            if candidate in lowered:
                return lowered.index(candidate)
        raise ValueError(
            f"{self._path}: no time column found (looked for {', '.join(TIME_COLUMN_CANDIDATES)}, case-insensitive); "
            f"columns are {header}; name it with --time-column"
        )

    def _indices(self, names: Sequence[str], what: str, flag: str) -> list[int]:
        if isinstance(names, str):  # a bare string would be iterated letter by letter
            names = [names]
        missing = [c for c in names if c not in self._header]
        if missing:
            raise ValueError(f"{self._path}: {what} {missing} not found; columns are {self._header} ({flag})")
        indices = [self._header.index(c) for c in names]
        if self.time in indices:
            raise ValueError(
                f"{self._path}: {self._header[self.time]!r} is the time column; it cannot be one of the {what}"
            )
        return indices


# -- body --------------------------------------------------------------------------------------


def _parse_fast(
    body: str, delim: str, width: int, time_idx: int, numeric_idx: list[int]
) -> tuple[list[str], np.ndarray] | None:
    """numpy's C ``loadtxt`` for the common clean file; ``None`` to fall back to ``_parse_csv``.

    About 3x faster than the csv module on 100k rows. Only taken when nothing can differ from the
    csv path: no quotes, every cell numeric (loadtxt rejects empty / text cells, which the csv path
    turns into NaN), and the delimiter count proves no row is longer than the header (loadtxt
    rejects shorter rows itself, since every column is read by one of the two passes).
    """
    if '"' in body:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "input contained no data" etc.: let the csv path decide
            numeric = np.loadtxt(
                io.StringIO(body), dtype=np.float64, delimiter=delim, comments=None, usecols=numeric_idx, ndmin=2
            )
            times = np.loadtxt(
                io.StringIO(body), dtype=str, delimiter=delim, comments=None, usecols=[time_idx], ndmin=2
            )
    except (ValueError, UserWarning):
        return None
    n = times.shape[0]
    if n == 0 or body.count(delim) != n * (width - 1) or (numeric_idx and numeric.shape[0] != n):
        return None
    if not numeric_idx:
        numeric = np.empty((n, 0))
    return [t.strip() for t in times[:, 0].tolist()], numeric


def _line_of(body: str, delim: str, row: int) -> int:
    """The file line (the header is line 1) of data row ``row``, as ``_parse_csv`` counts rows."""
    found = -1
    for line, cells in _records(body, delim):
        found += bool(cells)
        if found == row:
            return line
    return row + 2  # not reached for a row the parsers gave


def _records(body: str, delim: str) -> Iterator[tuple[int, list[str]]]:
    """Each record of the body (the file after its header line) with the file line it starts on."""
    return records_with_lines(csv.reader(io.StringIO(body, newline=""), delimiter=delim), lines_before=1)


class CsvReader(Protocol):
    """What ``csv.reader`` gives: records, and the count of lines read so far."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...


def records_with_lines(reader: CsvReader, lines_before: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Each record a ``csv.reader`` has still to give, with the file line it starts on (1-based):
    a quoted cell may hold line breaks, and the reader's ``line_num`` is then the record's last line.
    ``lines_before``: the file's lines before the reader's text (a header read apart)."""
    ended = reader.line_num
    for cells in reader:
        yield lines_before + ended + 1, cells
        ended = reader.line_num


def _parse_csv(body: str, delim: str, header: list[str], columns: _Columns) -> tuple[list[str], np.ndarray]:
    """The general path: quoting, empty and non-numeric cells (→ NaN), clear errors for bad rows."""
    width = len(header)
    rows: list[list[str]] = []
    line_numbers: list[int] = []  # of each row in the file (the header is line 1)
    for line, row in _records(body, delim):
        if not row:
            continue
        if len(row) != width:
            raise ValueError(f"line {line}: {len(row)} cells, header has {width}")
        rows.append(row)
        line_numbers.append(line)
    cells = list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]
    numeric = np.empty((len(rows), len(columns.sensors) + len(columns.labels)), dtype=np.float64)
    for j, i in enumerate(columns.sensors):
        numeric[:, j] = _to_float(cells[i])
    for j, i in enumerate(columns.labels, start=len(columns.sensors)):
        numeric[:, j] = _label_to_float(cells[i], header[i], line_numbers)
    return [cell.strip() for cell in cells[columns.time]], numeric


def _to_float(cells: Sequence[str]) -> np.ndarray:
    """Column of text to float64; cells that are not numbers become NaN."""
    try:
        return np.array(cells, dtype=np.float64)  # fast path: numpy parses the whole column in C
    except ValueError:
        return np.array([_cell_to_float(c) for c in cells], dtype=np.float64)


def _cell_to_float(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return math.nan


def _label_to_float(cells: Sequence[str], name: str, line_numbers: list[int]) -> np.ndarray:
    """A label column to float64: numbers, and empty cells as NaN (no label); text is refused.

    Text read as NaN would count as "normal" and quietly change every score against the labels.
    """
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(cells), dtype=np.float64)
    for k, cell in enumerate(cells):
        if not cell.strip():
            out[k] = math.nan
            continue
        try:
            out[k] = float(cell)
        except ValueError:
            raise ValueError(
                f"line {line_numbers[k]}: label column {name!r} holds {cell!r}; "
                "label cells must be numbers (0 = normal, anything else = anomalous) or empty"
            ) from None
    return out


# -- time --------------------------------------------------------------------------------------


def parse_times_ns(texts: Sequence[str]) -> np.ndarray:
    """Epoch nanoseconds from ISO-8601 / ``YYYY-MM-DD hh:mm:ss`` text (naive = UTC) or epoch numbers."""
    if not texts:
        return np.empty(0, dtype=np.int64)
    for parse in (_epoch_numbers, _numpy_times):
        parsed = parse(texts)
        if parsed is not None:
            return parsed
    return np.array([_iso_to_ns(t, i) for i, t in enumerate(texts)], dtype=np.int64)


class RowError(ValueError):
    """A bad cell of data row ``row`` (0-based): the reader turns it into the row's line in the file."""

    def __init__(self, row: int, problem: str) -> None:
        super().__init__(f"data row {row + 1}: {problem}")
        self.row, self.problem = row, problem


def _outside_int64(text: str, row: int) -> RowError:
    return RowError(row, f"time {text!r} {OUTSIDE_INT64}")


def _epoch_numbers(texts: Sequence[str]) -> np.ndarray | None:
    """Epoch numbers → ns, with the unit guessed from the column's largest magnitude; ``None`` if not numeric."""
    try:
        numbers = np.array(texts, dtype=np.float64)
    except ValueError:
        return None
    if not np.isfinite(numbers).all():
        return None
    biggest = float(np.abs(numbers).max())
    to_ns = epoch_unit_ns(biggest)
    if biggest * to_ns > INT64_MAX:  # numpy would wrap silently (float > int compares exactly)
        row = int(np.argmax(np.abs(numbers)))
        raise _outside_int64(texts[row], row)
    try:  # integers: exact in int64 (the bound above rules out overflow)
        return np.array(texts, dtype=np.int64) * to_ns
    except (ValueError, OverflowError):
        pass
    # Decimal, not float64: 19-digit nanosecond stamps need more than float64's ~16 digits.
    return np.array([int((Decimal(t) * to_ns).to_integral_value()) for t in texts], dtype=np.int64)


def _numpy_times(texts: Sequence[str]) -> np.ndarray | None:
    """numpy's C parser for naive ISO text (~25x faster than ``fromisoformat`` row by row).

    numpy warns on UTC offsets (it has no time zones) and yields NaT for "NaT" text: those fall
    back to the per-row path, which converts offsets and names bad rows. numpy wraps times outside
    int64 nanoseconds into wrong ones silently: a second parse in whole seconds catches those.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            stamps = np.array(texts, dtype="datetime64[ns]")
            seconds = np.array(texts, dtype="datetime64[s]")
    except (ValueError, UserWarning, DeprecationWarning):
        return None
    if np.isnat(stamps).any():
        return None
    ns = stamps.astype(np.int64)
    wrapped = ns // NS_PER_S != seconds.astype(np.int64)
    if wrapped.any():
        row = int(np.argmax(wrapped))
        raise _outside_int64(texts[row], row)
    return ns


def _iso_to_ns(text: str, row: int) -> int:
    try:
        ns = iso_to_ns(text, naive_is_utc=True)
    except TimeParseError:
        raise RowError(row, f"cannot parse time {text!r}") from None
    if not INT64_MIN <= ns <= INT64_MAX:
        raise _outside_int64(text, row)
    return ns
