"""Storage sinks: where readings and verdicts are durably written before MQTT messages are acked.

Delivery contract
-----------------
``Sink.write`` returns only once every reading it was given is durably stored (or deliberately
dropped because the store rejected it as invalid). The caller acks the MQTT messages after it
returns, so the broker keeps everything we have not confirmed. That drives the error rules of
:class:`InfluxSink`:

* **Transient** failures (HTTP 429, 5xx, timeouts, connection errors) are retried for ever with
  capped exponential backoff, honouring ``Retry-After`` (seconds or HTTP-date). Giving up would
  lose data the broker still holds for us; the only way out is ``stop_event`` → :class:`SinkStopped`
  (the caller then exits without acking, and the broker redelivers on the next run).
* **413** (body too large): split the batch in halves and write each half (a single line that is
  still too large is dropped and counted with reason ``http_413``).
* **400 / 422** (bad line protocol, field-type conflict): split to isolate the bad lines, then drop
  each single bad line and count it. Acking after a drop is correct: redelivery would fail again.
* **401 / 403**: :class:`SinkAuthError` — retrying cannot help, the operator must fix the token.
* Any other 4xx (e.g. 404 unknown bucket/org): :class:`SinkFatal`.

Re-sending a batch (after a timeout, or after a 422 partial write where InfluxDB 2.x already stored
the good lines) can write a line twice. InfluxDB overwrites the same series+timestamp+field, so this
is idempotent there; VictoriaMetrics keeps both samples (no dedup unless configured).

influxdb-client's SYNCHRONOUS write API does no retrying of its own (its ``WriteOptions`` retry
settings only apply to batching mode), and we construct the client with ``retries=False`` so urllib3
doesn't retry either: all retry policy lives here and is counted.

Line protocol is built by hand (about 2x cheaper than ``Point`` objects). Every sensor value is
written as a float (``1.0`` never ``1i``) so a series never flips type. Verdicts go to the
``anomaly`` measurement with float fields ``score``, ``probability`` and ``anomaly`` (0.0/1.0, a
float rather than ``1i`` so VictoriaMetrics and InfluxDB treat it alike and it can be averaged).
Non-finite values (NaN, ±inf) cannot be expressed in line protocol and are dropped locally.
"""

from __future__ import annotations

import email.utils
import enum
import functools
import json
import logging
import math
import sqlite3
import threading
import time
from collections import Counter as _Tally
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar, cast, runtime_checkable

import urllib3.exceptions
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from detector.types import Verdict
from ingest.messages import Reading
from ingest.tls import NO_TLS_FILES, TlsFiles
from telemetry.counters import Counters

log = logging.getLogger(__name__)

__all__ = [
    "InfluxSink",
    "Sink",
    "SinkAuthError",
    "SinkError",
    "SinkFatal",
    "SinkStopped",
    "SqliteSink",
    "escape_field_key",
    "escape_measurement",
    "escape_tag",
    "reading_line",
    "verdict_line",
]

_T = TypeVar("_T")
_MAX_RETRY_AFTER_S = 3600.0
# WritePrecision.NS is the str "ns" although write() annotates the parameter as WritePrecision.
_NS = cast(WritePrecision, WritePrecision.NS)  # sanity bound on a server-supplied Retry-After


# --------------------------------------------------------------------------------------------- API


@runtime_checkable
class Sink(Protocol):
    """Durable storage for readings and verdicts."""

    def write(self, readings: Sequence[Reading]) -> None:
        """Store ``readings``; return only once they are durable (the caller then acks MQTT)."""
        ...

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        """Store detector verdicts."""
        ...

    def close(self) -> None:
        """Release connections/files."""
        ...


class SinkError(Exception):
    """Base class of sink errors."""


class SinkFatal(SinkError):
    """A failure retrying cannot fix (configuration, permissions); the service should stop."""


class SinkAuthError(SinkFatal):
    """The store refused our credentials (HTTP 401/403)."""


class SinkStopped(SinkError):
    """``stop_event`` was set while a write was still being retried; nothing may be acked."""


# ------------------------------------------------------------------------------ line protocol


def _clean(text: str) -> str:
    # Line protocol has no escape for newlines in names/tags: a raw one would split the line
    # (and could inject a point), so it becomes a space.
    return text.replace("\r", " ").replace("\n", " ")


@functools.lru_cache(maxsize=1024)
def escape_measurement(name: str) -> str:
    """Escape a measurement name (backslash, comma, space)."""
    return _clean(name).replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


@functools.lru_cache(maxsize=65536)  # asset, tag and sensor names repeat: escape each once
def escape_tag(text: str) -> str:
    """Escape a tag key or tag value (backslash, comma, equals, space)."""
    return _clean(text).replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


escape_field_key = escape_tag  # field keys share the tag-key escaping rules


def _fields(values: Iterable[tuple[str, float]]) -> str:
    isfinite, esc = math.isfinite, escape_field_key
    return ",".join([f"{esc(k)}={float(v)!r}" for k, v in values if isfinite(v)])


@functools.lru_cache(maxsize=16384)
def _series_key(measurement: str, asset: str, tags: tuple[tuple[str, str], ...]) -> str:
    """``measurement,tag=value,...`` with tags sorted by key; empty tag values are left out."""
    merged = {k: v for k, v in tags if k and v}
    merged["asset"] = asset
    tagset = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(merged.items()))
    return escape_measurement(measurement) + tagset


def reading_line(measurement: str, reading: Reading) -> str | None:
    """One line for ``reading`` (tags sorted by key, float fields); None if no finite value."""
    fields = _fields(reading.values.items())
    if not fields:
        return None
    key = _series_key(measurement, reading.asset, tuple(reading.tags.items()))
    return f"{key} {fields} {reading.ts_ns}"


def verdict_line(measurement: str, verdict: Verdict) -> str | None:
    """One line for ``verdict``: float fields score, probability, anomaly (0.0/1.0) and, once a
    baseline is learned, alarm_enter (the level the row was judged by)."""
    values = [
        ("alarm_enter", math.nan if verdict.alarm_enter is None else verdict.alarm_enter),
        ("anomaly", 1.0 if verdict.anomaly else 0.0),
        ("probability", verdict.probability),
        ("score", verdict.score),
    ]
    fields = _fields(values)
    if not fields:
        return None
    return f"{_series_key(measurement, verdict.asset, ())} {fields} {verdict.ts_ns}"


# --------------------------------------------------------------------------------------- Influx


class _Outcome(enum.Enum):
    OK = "ok"
    TOO_LARGE = "http_413"
    INVALID = "invalid"


class InfluxSink:
    """Writes to an InfluxDB 2.x-compatible ``/api/v2/write`` endpoint (see module docstring)."""

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        *,
        measurement: str = "readings",
        anomaly_measurement: str = "anomaly",
        timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        counters: Counters,
        stop_event: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tls_files: TlsFiles = NO_TLS_FILES,
    ) -> None:
        self._url = url
        self._org = org
        self._bucket = bucket
        self._measurement = measurement
        self._anomaly_measurement = anomaly_measurement
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._counters = counters
        self._stop = stop_event
        self._sleep = sleep
        self._client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=max(1, int(timeout_s * 1000)),
            retries=False,
            ssl_ca_cert=tls_files.ca_file,
            cert_file=tls_files.cert_file,
            cert_key_file=tls_files.key_file,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    # -- public

    def write(self, readings: Sequence[Reading]) -> None:
        lines = self._build(readings, lambda r: reading_line(self._measurement, r))
        written = self._write_lines(lines)
        if written:
            self._counters.inc("plantwatch_readings_written_total", amount=written)

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        lines = self._build(verdicts, lambda v: verdict_line(self._anomaly_measurement, v))
        self._write_lines(lines)

    def close(self) -> None:
        self._api.close()
        self._client.close()

    # -- batching / splitting

    def _build(self, items: Sequence[_T], to_line: Callable[[_T], str | None]) -> list[str]:
        lines = []
        for item in items:
            line = to_line(item)
            if line is None:
                self._counters.inc("plantwatch_points_dropped_total", reason="non_finite")
                log.warning("dropping a point without any finite value: %r", item)
            else:
                lines.append(line)
        return lines

    def _write_lines(self, lines: list[str]) -> int:
        """Write all lines (splitting on 413/400/422); return how many were stored."""
        written = 0
        drops: _Tally[str] = _Tally()
        samples: dict[str, str] = {}
        pending = [lines] if lines else []
        while pending:
            chunk = pending.pop()
            outcome, reason, message = self._post(chunk)
            if outcome is _Outcome.OK:
                written += len(chunk)
            elif len(chunk) > 1:
                mid = len(chunk) // 2
                pending += [chunk[mid:], chunk[:mid]]  # first half is popped (written) first
            else:
                drops[reason] += 1
                samples.setdefault(reason, f"{message} (line: {chunk[0][:300]})")
                self._counters.inc("plantwatch_points_dropped_total", reason=reason)
        for reason, count in drops.items():
            log.warning("dropped %d point(s) refused with %s; first: %s", count, reason, samples[reason])
        return written

    # -- one request, retried until it is not transient

    def _post(self, chunk: list[str]) -> tuple[_Outcome, str, str]:
        """POST one body until it is not transiently failing: (outcome, reason label, server message)."""
        body = "\n".join(chunk)
        attempt = 0
        while True:  # the first attempt is made even if stop is set: a final drain may still succeed
            try:
                self._api.write(self._bucket, self._org, body, write_precision=_NS)
                return _Outcome.OK, "", ""
            except ApiException as exc:
                status = int(exc.status or 0)
                outcome = self._classify(exc, status)
                if outcome is not None:
                    return outcome, f"http_{status}", _error_message(exc)
                delay = _retry_after(exc) or self._backoff(attempt)
                what = f"HTTP {status}"
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if isinstance(exc, urllib3.exceptions.LocationValueError):
                    raise SinkFatal(f"invalid InfluxDB url {self._url!r}: {exc}") from exc
                delay = self._backoff(attempt)
                what = f"{type(exc).__name__}: {exc}"
            attempt += 1
            self._counters.inc("plantwatch_sink_retries_total")
            log.warning("write of %d line(s) failed (%s); retry %d in %.2fs", len(chunk), what, attempt, delay)
            self._pause(delay)

    def _classify(self, exc: ApiException, status: int) -> _Outcome | None:
        """None = transient (retry); otherwise the outcome; raises for fatal statuses."""
        if status == 429 or status >= 500:
            return None
        if status == 413:
            return _Outcome.TOO_LARGE
        if status in (400, 422):
            return _Outcome.INVALID
        message = _error_message(exc)
        if status in (401, 403):
            raise SinkAuthError(
                f"InfluxDB refused the write with HTTP {status} ({message}): check that the token is valid "
                f"and has write permission on bucket {self._bucket!r} in org {self._org!r}"
            ) from exc
        raise SinkFatal(
            f"InfluxDB refused the write with HTTP {status} ({message}): check the url, "
            f"org {self._org!r} and bucket {self._bucket!r}"
        ) from exc

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_max_s, self._backoff_initial_s * (2.0 ** min(attempt, 30))))

    def _check_stop(self) -> None:
        if self._stop is not None and self._stop.is_set():
            raise SinkStopped("stop requested while writing to InfluxDB; the batch was not confirmed")

    def _pause(self, delay: float) -> None:
        # With the real clock, wait on the stop event so shutdown interrupts a long backoff;
        # an injected sleep (tests) is called as is and the event checked afterwards.
        self._check_stop()
        if self._stop is not None and self._sleep is time.sleep:
            self._stop.wait(delay)
        else:
            self._sleep(delay)
        self._check_stop()


def _retry_after(exc: ApiException) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), if present and sane."""
    raw = getattr(exc, "retry_after", None)
    if raw is None and exc.headers is not None:
        raw = exc.headers.get("Retry-After")
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(text).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S) or None


def _error_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            return str(json.loads(body).get("message", body))[:300]
        except (ValueError, AttributeError):
            return str(body)[:300]
    return str(exc.reason or "no detail")


# --------------------------------------------------------------------------------------- SQLite

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    asset TEXT NOT NULL, ts_ns INTEGER NOT NULL, sensor TEXT NOT NULL, value REAL NOT NULL,
    tags_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS readings_asset_ts ON readings (asset, ts_ns);
CREATE TABLE IF NOT EXISTS anomaly (
    asset TEXT NOT NULL, ts_ns INTEGER NOT NULL, score REAL, probability REAL, anomaly INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS anomaly_asset_ts ON anomaly (asset, ts_ns);
"""
# One point per series and instant, as InfluxDB keeps it: a redelivered reading, or a verdict scored
# again after a crash, replaces its first copy. Files written before these indexes may hold such
# copies; the newest is kept when the index is made.
_ONE_POINT = (
    ("readings", "readings_point", "asset, ts_ns, sensor, tags_json"),
    ("anomaly", "anomaly_point", "asset, ts_ns"),
)


class SqliteSink:
    """Embedded storage for ``plantwatch demo``: WAL mode, one committed transaction per call."""

    def __init__(self, path: str | Path, *, counters: Counters) -> None:
        self._counters = counters
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # WAL + NORMAL may lose commits on power loss
        self._db.executescript(SQLITE_SCHEMA)
        for table, index, key in _ONE_POINT:
            if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (index,)).fetchone():
                self._db.executescript(
                    f"BEGIN; DELETE FROM {table} WHERE rowid NOT IN (SELECT max(rowid) FROM {table} GROUP BY {key});"
                    f"CREATE UNIQUE INDEX {index} ON {table} ({key}); COMMIT;"
                )

    def write(self, readings: Sequence[Reading]) -> None:
        rows = []
        stored = 0
        for r in readings:
            tags_json = json.dumps(dict(r.tags), sort_keys=True)
            finite = [(s, float(v)) for s, v in r.values.items() if math.isfinite(v)]
            if not finite:
                self._counters.inc("plantwatch_points_dropped_total", reason="non_finite")
            stored += bool(finite)
            rows += [(r.asset, r.ts_ns, s, v, tags_json) for s, v in finite]
        self._transaction("INSERT OR REPLACE INTO readings VALUES (?, ?, ?, ?, ?)", rows)
        if stored:
            self._counters.inc("plantwatch_readings_written_total", amount=stored)

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        rows = [
            (v.asset, v.ts_ns, _finite_or_none(v.score), _finite_or_none(v.probability), int(v.anomaly))
            for v in verdicts
        ]
        self._transaction("INSERT OR REPLACE INTO anomaly VALUES (?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
