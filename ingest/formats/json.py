"""JSON payloads: a frame of one asset's sensors, or one sensor's value.

* Frame: ``{"ts": ..., "values": {"<sensor>": <number>, ...}}``.
* Single value: ``{"ts": ..., "value": <number>}``; the sensor is the topic's ``{sensor}`` segment
  or, when the template has none, a ``"sensor": "<name>"`` key.

Both shapes live in this one module because they share one parse: the document is read once and its
keys decide the shape.

``ts``:

* absent (or ``null``): the arrival time;
* an ISO-8601 string WITH a zone, e.g. ``2024-05-01T12:00:00Z`` or ``2024-05-01T14:00:00+02:00``
  (up to nanosecond digits); a string without a zone is rejected, as its instant is ambiguous;
* a number: UNIX epoch time, its unit told apart by magnitude (:func:`ingest.timestamps.epoch_unit_ns`):

  ======================  ============================
  ``ts < 1e11``           seconds (fractions allowed)
  ``1e11 <= ts < 1e14``   milliseconds
  ``1e14 <= ts < 1e17``   microseconds
  ``ts >= 1e17``          nanoseconds
  ======================  ============================

  Fractional numbers are resolved to the microsecond, the best a float can do for present-day epochs;
* rejected as ``bad_timestamp``: booleans, NaN/infinity, negative values, times before 1970 or after
  2262-04-11T23:47:16.854775807Z (the int64-nanosecond limit InfluxDB shares), unzoned strings.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

from detector.types import MAX_ABS_VALUE
from ingest.formats.base import (
    AFTER_INT64,
    MAX_NAME_LEN,
    NOT_FINITE,
    ParserContext,
    check_name,
    first_problem,
)
from ingest.messages import Decoded, DecodeError, Reading, short
from ingest.timestamps import INT64_MAX, TimeParseError, epoch_to_ns, iso_to_ns

__all__ = ["JsonParser"]

_SHAPES = 'expected {"ts": ..., "values": {"<sensor>": <number>, ...}} or {"ts": ..., "value": <number>}'


class JsonParser:
    """Claims payloads starting with ``{`` or ``[`` (a JSON array is reported as the wrong shape)."""

    reasons: ClassVar[tuple[str, ...]] = ("malformed_json",)

    def __init__(self, context: ParserContext) -> None:
        self._template = context.template.template
        self._now_ns = context.now_ns

    def claims(self, text: str) -> bool:
        first = text[0]
        return first == "{" or first == "["

    def parse(self, text: str, asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
        try:
            doc = json.loads(text)
        except RecursionError:
            raise DecodeError("malformed_json", "nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, and int() digit limits on huge literals
            raise DecodeError("malformed_json", short(str(exc), 120)) from None
        if type(doc) is not dict:
            raise DecodeError("malformed_json", f"top level is a {type(doc).__name__}; {_SHAPES}")
        if "values" in doc:
            if "value" in doc:
                raise DecodeError("malformed_json", f"both 'value' and 'values' given; {_SHAPES}")
            return self._frame(doc, asset, tags)
        if "value" in doc:
            return self._single(doc, asset, sensor, tags)
        raise DecodeError("malformed_json", f"no 'values' or 'value' key; {_SHAPES}")

    def _frame(self, doc: dict[str, Any], asset: str, tags: dict[str, str]) -> Decoded:
        raw_values = doc["values"]
        if type(raw_values) is not dict:
            raise DecodeError("malformed_json", f"'values' is a {type(raw_values).__name__}; {_SHAPES}")
        if not raw_values:
            raise DecodeError("no_values", "'values' is empty")
        check_name("asset", asset)
        ts_ns = self._ts_to_ns(doc.get("ts"))
        values: dict[str, float] = {}
        problems: list[DecodeError] = []
        for name, value in raw_values.items():
            # Hot loop: the common case (short printable name, float within ±MAX_ABS_VALUE) is
            # tested inline; the helpers below only run to classify a problem. The range test is
            # False for NaN and infinities too.
            if (
                type(value) is float
                and -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE
                and 0 < len(name) <= MAX_NAME_LEN
                and name.isprintable()
                and '"' not in name  # see ingest.formats.base.name_problem
            ):
                values[name] = value
                continue
            try:
                check_name("sensor", name)
                values[name] = _number(name, value)
            except DecodeError as exc:
                problems.append(exc)
        if not values:
            raise first_problem(problems)
        return Decoded((Reading(asset, ts_ns, values, tags),), tuple(problems))

    def _single(self, doc: dict[str, Any], asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
        if sensor is None:
            sensor = doc.get("sensor")
            if sensor is None:
                raise DecodeError(
                    "missing_sensor",
                    f"single value but topic template {self._template!r} has no {{sensor}} "
                    "segment and the payload has no 'sensor' key",
                )
            if not isinstance(sensor, str):
                raise DecodeError("bad_name", f"'sensor' {short(sensor)} is not a string")
        check_name("asset", asset)
        check_name("sensor", sensor)
        ts_ns = self._ts_to_ns(doc.get("ts"))
        value = _number(sensor, doc["value"])
        return Decoded((Reading(asset, ts_ns, {sensor: value}, tags),), ())

    def _ts_to_ns(self, ts: object) -> int:
        if ts is None:
            return self._now_ns()
        if type(ts) is int or type(ts) is float:
            return _epoch_ts_to_ns(ts)
        if isinstance(ts, str):
            return _iso_ts_to_ns(ts)
        # bool is caught here too: type(True) is bool, not int.
        raise DecodeError("bad_timestamp", f"ts {short(ts)} must be an epoch number or an ISO-8601 string with a zone")


def _epoch_ts_to_ns(ts: int | float) -> int:
    if ts < 0:
        raise DecodeError("bad_timestamp", f"ts {ts!r} is negative")
    if type(ts) is float and not math.isfinite(ts):
        raise DecodeError("bad_timestamp", f"ts {ts!r} is not finite")
    ns = epoch_to_ns(ts)
    if ns > INT64_MAX:
        raise DecodeError("bad_timestamp", f"ts {short(ts)} {AFTER_INT64}")
    return ns


def _iso_ts_to_ns(text: str) -> int:
    if len(text) > 64:  # no ISO-8601 time is this long; don't parse kilobytes of it
        raise DecodeError("bad_timestamp", f"ts {short(text)} is not an ISO-8601 time")
    try:
        ns = iso_to_ns(text, naive_is_utc=False)  # the sender's zone is unknown: refuse to guess
    except TimeParseError as exc:
        raise DecodeError("bad_timestamp", f"ts {short(text)} {exc.why}") from None
    if ns < 0:
        raise DecodeError("bad_timestamp", f"ts {short(text)} is before 1970")
    if ns > INT64_MAX:
        raise DecodeError("bad_timestamp", f"ts {short(text)} {AFTER_INT64}")
    return ns


def _number(sensor: str, value: Any) -> float:
    """A JSON value as a finite float, or DecodeError(non_numeric | non_finite)."""
    kind = type(value)
    if kind is float:
        if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            return float(value)
        raise DecodeError("non_finite", f"sensor {short(sensor)} value {value!r} {NOT_FINITE}")
    if kind is int:
        if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            return float(value)
        raise DecodeError("non_finite", f"sensor {short(sensor)} integer value {NOT_FINITE}")
    # bool (type is bool, not int), str, None, list, dict
    raise DecodeError("non_numeric", f"sensor {short(sensor)} value {short(value)} is not a number")
