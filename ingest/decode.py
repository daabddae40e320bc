"""MQTT payload decoding: topic templates and the four payload formats plantwatch accepts.

Pure functions over ``(topic, payload)``: no I/O, no paho, no threads. :meth:`Decoder.decode` runs on
paho's network thread for every message, so the hot path avoids per-call setup (patterns are compiled
at import, topic templates are pre-split once).

Payload formats (auto-detected from the first non-blank character):

* JSON frame, one per asset: ``{"ts": ..., "values": {"<sensor>": <number>, ...}}``.
* JSON single value: ``{"ts": ..., "value": <number>}``; the sensor is the topic's ``{sensor}``
  segment or, when the template has none, a ``"sensor": "<name>"`` key.
* A bare number (``21.5``, ``-3e2``): the sensor comes from the topic, the time is the arrival time.
* InfluxDB line protocol, one or more lines: ``measurement[,tag=v...] field=value[,...] [timestamp]``.
  Fields are the sensors; the measurement name is not used. The asset is the ``asset`` tag if present,
  else the topic's; other tags are merged over the topic's tags (the line's win). ``12i``/``12u``
  integers and floats are accepted; string and boolean fields are reported as ``non_numeric``.
  Escapes (``\\ ``, ``\\,``, ``\\=``) and quoted string fields are understood; ``#`` lines are comments.

Timestamps in JSON (``ts``):

* absent (or ``null``): the arrival time;
* an ISO-8601 string WITH a zone, e.g. ``2024-05-01T12:00:00Z`` or ``2024-05-01T14:00:00+02:00``
  (up to nanosecond digits); a string without a zone is rejected, as its instant is ambiguous;
* a number: UNIX epoch time, its unit told apart by magnitude:

  ======================  ============================
  ``ts < 1e11``           seconds (fractions allowed)
  ``1e11 <= ts < 1e14``   milliseconds
  ``1e14 <= ts < 1e17``   microseconds
  ``ts >= 1e17``          nanoseconds
  ======================  ============================

  Each band spans 1973-03-03 to 5138-11-16 in its own unit, so any time after March 1973 is read in
  the unit it was sent in. Fractional numbers are resolved to the microsecond, the best a float can
  do for present-day epochs;
* rejected as ``bad_timestamp``: booleans, NaN/infinity, negative values, times after
  2262-04-11T23:47:16.854775807Z (the int64-nanosecond limit InfluxDB shares), unzoned strings;
* rejected as ``future_timestamp`` (with ``max_future_ns`` set, as the service does): readings
  stamped further ahead of this machine's clock than that.

Line-protocol timestamps are integer nanoseconds, as the line-protocol spec says; absent means the
arrival time.

Every rejection carries one of :data:`REJECTION_REASONS` (stable labels used as Prometheus label
values). Problems confined to one sensor or one line drop just that part and are returned in
:attr:`Decoded.problems`; if nothing usable remains the first problem is raised.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from detector.types import MAX_ABS_VALUE  # beyond it the detector cannot use a value: refused as non_finite
from ingest.messages import Decoded, DecodeError, Reading

__all__ = ["REJECTION_REASONS", "Decoder", "TopicTemplate"]

REJECTION_REASONS: tuple[str, ...] = (
    "oversized",
    "bad_encoding",
    "unknown_topic",
    "malformed_json",
    "malformed_line_protocol",
    "missing_sensor",
    "no_values",
    "non_numeric",
    "non_finite",
    "bad_timestamp",
    "future_timestamp",
    "bad_name",
)

MAX_NAME_LEN = 128
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Control characters (C0, DEL, C1) and lone surrogates: the latter cannot be encoded to UTF-8, so a
# name holding one would fail later at the InfluxDB write instead of here.
_BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_JSON_SHAPES = 'expected {"ts": ..., "values": {"<sensor>": <number>, ...}} or {"ts": ..., "value": <number>}'
_LP_BOOLS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})
_LP_KEY_ESCAPES = ", ="  # characters a backslash escapes in measurement, tag and field keys, tag values


def _short(value: object, limit: int = 60) -> str:
    """repr() cut to ``limit`` chars: details end up in logs and dead letters, payloads can be 64 KiB."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name_problem(name: str) -> str | None:
    """Why ``name`` is unusable as an asset or sensor name, or None when it is fine."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LEN:
        return f"is longer than {MAX_NAME_LEN} characters"
    # isprintable() is a fast C check that passes almost every real name; the regex decides the rest
    # (non-printable but acceptable characters such as U+00A0 only take this slower path).
    if not name.isprintable() and _BAD_NAME_CHARS.search(name):
        return "contains control characters"
    return None


def _check_name(kind: str, name: str) -> str:
    problem = _name_problem(name)
    if problem is not None:
        raise DecodeError("bad_name", f"{kind} name {_short(name)} {problem}")
    return name


# --------------------------------------------------------------------------------------------------
# Topic templates
# --------------------------------------------------------------------------------------------------
class TopicTemplate:
    """A topic layout such as ``plant/{line}/{asset}/{sensor}``.

    ``{asset}`` is required, ``{sensor}`` optional, any other ``{name}`` segment becomes a tag, and
    literal segments must match exactly. Placeholders fill whole segments.
    """

    __slots__ = ("template", "has_sensor", "tag_names", "_segments", "_literals", "_asset", "_sensor", "_tags")

    def __init__(self, template: str) -> None:
        self.template = template
        segments = template.split("/")
        literals: list[tuple[int, str]] = []
        names: dict[str, int] = {}
        for index, segment in enumerate(segments):
            match = _PLACEHOLDER.fullmatch(segment)
            if match:
                name = match.group(1)
                if name in names:
                    raise ValueError(f"topic template {template!r}: {{{name}}} appears twice")
                names[name] = index
            elif not segment:
                raise ValueError(
                    f"topic template {template!r}: empty segment (check for '//' or a leading/trailing '/')"
                )
            elif "{" in segment or "}" in segment:
                raise ValueError(
                    f"topic template {template!r}: segment {segment!r} is not a literal or a whole "
                    "{name} placeholder (names are identifiers; a placeholder fills its whole segment)"
                )
            elif "+" in segment or "#" in segment:
                raise ValueError(
                    f"topic template {template!r}: wildcards ('+', '#') are not allowed; use "
                    "{name} segments, subscription() derives the filter"
                )
            else:
                literals.append((index, segment))
        if "asset" not in names:
            raise ValueError(
                f"topic template {template!r} has no {{asset}} segment; every reading needs an asset, "
                "e.g. 'plant/{line}/{asset}/{sensor}'"
            )
        self._segments = tuple(segments)
        self._literals = tuple(literals)
        self._asset = names.pop("asset")
        self._sensor = names.pop("sensor", -1)
        self.has_sensor = self._sensor >= 0
        self._tags = tuple(names.items())
        self.tag_names = tuple(names)

    def __repr__(self) -> str:
        return f"TopicTemplate({self.template!r})"

    def parse(self, topic: str) -> tuple[str, str | None, dict[str, str]]:
        """Split ``topic`` into (asset, sensor or None, tags); DecodeError("unknown_topic") if it does not fit."""
        parts = topic.split("/")
        if len(parts) != len(self._segments):
            raise DecodeError(
                "unknown_topic",
                f"topic {_short(topic)} has {len(parts)} segments, "
                f"template {self.template!r} has {len(self._segments)}",
            )
        for index, literal in self._literals:
            if parts[index] != literal:
                raise DecodeError(
                    "unknown_topic", f"topic {_short(topic)} segment {index + 1} is not {literal!r} ({self.template!r})"
                )
        if "" in parts:
            raise DecodeError("unknown_topic", f"topic {_short(topic)} has an empty segment")
        sensor = parts[self._sensor] if self._sensor >= 0 else None
        return parts[self._asset], sensor, {name: parts[index] for name, index in self._tags}

    def subscription(self) -> str:
        """The MQTT subscription filter matching this template (each placeholder becomes ``+``)."""
        return "/".join("+" if _PLACEHOLDER.fullmatch(s) else s for s in self._segments)

    def render(self, asset: str, sensor: str | None = None, **tags: str) -> str:
        """Build a topic from values (the replay tool publishes to it); ValueError if one is missing or unusable."""
        values = dict(tags)
        unknown = sorted(set(values) - set(self.tag_names))
        if unknown:
            raise ValueError(f"topic template {self.template!r} has no segment for {', '.join(unknown)}")
        missing = [name for name in self.tag_names if name not in values]
        if missing:
            raise ValueError(f"topic template {self.template!r} needs a value for {', '.join(missing)}")
        values["asset"] = asset
        if self.has_sensor:
            if sensor is None:
                raise ValueError(f"topic template {self.template!r} needs a sensor")
            values["sensor"] = sensor
        elif sensor is not None:
            raise ValueError(f"topic template {self.template!r} has no {{sensor}} segment")
        out = list(self._segments)
        for name, value in values.items():
            if not isinstance(value, str) or not value or "/" in value or "+" in value or "#" in value:
                raise ValueError(f"{name}={value!r} cannot be a topic segment (empty, or contains '/', '+' or '#')")
            out[self._index_of(name)] = value
        return "/".join(out)

    def _index_of(self, name: str) -> int:
        if name == "asset":
            return self._asset
        if name == "sensor":
            return self._sensor
        return dict(self._tags)[name]


# --------------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------------
def _epoch_number_to_ns(ts: int | float) -> int:
    """Epoch number in s/ms/µs/ns (by magnitude, see module docstring) to ns."""
    if ts < 0:
        raise DecodeError("bad_timestamp", f"ts {ts!r} is negative")
    if type(ts) is int:
        if ts < 100_000_000_000:
            ns = ts * 1_000_000_000
        elif ts < 100_000_000_000_000:
            ns = ts * 1_000_000
        elif ts < 100_000_000_000_000_000:
            ns = ts * 1_000
        else:
            ns = ts
    else:
        if not math.isfinite(ts):
            raise DecodeError("bad_timestamp", f"ts {ts!r} is not finite")
        # Through whole microseconds: a float epoch cannot carry finer detail for present-day times,
        # and rounding there turns 1714564800.123 into .123000000 instead of .122999907.
        if ts < 1e11:
            ns = round(ts * 1e6) * 1000
        elif ts < 1e14:
            ns = round(ts * 1e3) * 1000
        elif ts < 1e17:
            ns = round(ts) * 1000
        else:
            ns = round(ts)
    if ns > _INT64_MAX:
        raise DecodeError("bad_timestamp", f"ts {_short(ts)} is after 2262-04-11, beyond int64 nanoseconds")
    return ns


def _iso_to_ns(text: str) -> int:
    if len(text) > 64:
        raise DecodeError("bad_timestamp", f"ts {_short(text)} is not an ISO-8601 time")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError(
            "bad_timestamp", f"ts {_short(text)} is not an ISO-8601 time such as 2024-05-01T12:00:00Z"
        ) from None
    if parsed.utcoffset() is None:
        raise DecodeError("bad_timestamp", f"ts {_short(text)} has no time zone; add a zone such as Z or +02:00")
    try:
        delta = parsed - _EPOCH
    except OverflowError:
        raise DecodeError("bad_timestamp", f"ts {_short(text)} is out of range") from None
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    ns += _sub_microsecond_ns(text)
    if ns < 0:
        raise DecodeError("bad_timestamp", f"ts {_short(text)} is before 1970")
    if ns > _INT64_MAX:
        raise DecodeError("bad_timestamp", f"ts {_short(text)} is after 2262-04-11, beyond int64 nanoseconds")
    return ns


def _sub_microsecond_ns(text: str) -> int:
    """Nanoseconds beyond the 6 fraction digits fromisoformat keeps (it truncates the rest)."""
    dot = text.find(".", 10)
    if dot < 0:
        dot = text.find(",", 10)
        if dot < 0:
            return 0
    end = dot + 1
    while end < len(text) and text[end] in "0123456789":
        end += 1
    extra = text[dot + 7 : min(end, dot + 10)]
    return int(extra.ljust(3, "0")) if extra else 0


def _json_ts_to_ns(ts: object, now_ns: Callable[[], int]) -> int:
    if ts is None:
        return now_ns()
    if type(ts) is int or type(ts) is float:
        return _epoch_number_to_ns(ts)
    if isinstance(ts, str):
        return _iso_to_ns(ts)
    # bool is caught here too: type(True) is bool, not int.
    raise DecodeError("bad_timestamp", f"ts {_short(ts)} must be an epoch number or an ISO-8601 string with a zone")


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------
_NOT_FINITE = f"is not finite or beyond ±{MAX_ABS_VALUE:g}"


def _json_number(sensor: str, value: Any) -> float:
    """A JSON value as a finite float, or DecodeError(non_numeric | non_finite)."""
    kind = type(value)
    if kind is float:
        if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            return float(value)
        raise DecodeError("non_finite", f"sensor {_short(sensor)} value {value!r} {_NOT_FINITE}")
    if kind is int:
        if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            return float(value)
        raise DecodeError("non_finite", f"sensor {_short(sensor)} integer value {_NOT_FINITE}")
    # bool (type is bool, not int), str, None, list, dict
    raise DecodeError("non_numeric", f"sensor {_short(sensor)} value {_short(value)} is not a number")


def _bare_number(text: str) -> float | None:
    """``text`` as a number if it is one (ASCII, no digit separators), else None."""
    if not text.isascii() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Line protocol
# --------------------------------------------------------------------------------------------------
def _lp_malformed(detail: str) -> DecodeError:
    return DecodeError("malformed_line_protocol", detail)


LpLine = tuple[dict[str, str], list[tuple[str, str]], str]


def _lp_split(line: str) -> LpLine:
    """Split one line into (tags, [(field key, raw value)], raw timestamp or "")."""
    if "\\" in line or '"' in line:
        return _lp_split_escaped(line)
    return _lp_split_plain(line)


def _lp_split_plain(line: str) -> LpLine:
    # Fast path: with no escapes and no quoted strings, every separator is literal.
    sections = [s for s in line.split(" ") if s]
    if len(sections) not in (2, 3):
        raise _lp_malformed("expected 'measurement[,tag=value...] field=value[,...] [timestamp]'")
    series = sections[0].split(",")
    if not series[0]:
        raise _lp_malformed("empty measurement")
    tags: dict[str, str] = {}
    for element in series[1:]:
        key, eq, value = element.partition("=")
        if not eq or not key or not value or "=" in value:
            raise _lp_malformed(f"tag {_short(element)} is not key=value")
        tags[key] = value
    fields: list[tuple[str, str]] = []
    for element in sections[1].split(","):
        key, eq, value = element.partition("=")
        if not eq or not key or not value:
            raise _lp_malformed(f"field {_short(element)} is not key=value")
        fields.append((key, value))
    return tags, fields, sections[2] if len(sections) == 3 else ""


def _lp_split_escaped(line: str) -> LpLine:
    # Slow path: a scanner that honours backslash escapes and double-quoted string field values.
    n = len(line)
    i = 0
    elements: list[list[str]] = []  # measurement, then tags, each split at unescaped '='
    parts: list[str] = []
    buf: list[str] = []
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n and line[i + 1] in _LP_KEY_ESCAPES:
            buf.append(line[i + 1])
            i += 2
            continue
        if c == " ":
            break
        if c == ",":
            parts.append("".join(buf))
            elements.append(parts)
            parts, buf = [], []
        elif c == "=":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    parts.append("".join(buf))
    elements.append(parts)
    if not "=".join(elements[0]):
        raise _lp_malformed("empty measurement")
    tags: dict[str, str] = {}
    for element in elements[1:]:
        if len(element) != 2 or not element[0] or not element[1]:
            raise _lp_malformed(f"tag {_short('='.join(element))} is not key=value")
        tags[element[0]] = element[1]
    while i < n and line[i] == " ":
        i += 1
    fields: list[tuple[str, str]] = []
    while True:
        key, i = _lp_scan_field_key(line, i)
        value, i = _lp_scan_field_value(line, i)
        if not key or not value:
            raise _lp_malformed(f"field {_short(key + '=' + value)} is not key=value")
        fields.append((key, value))
        if i < n and line[i] == ",":
            i += 1
            continue
        break
    rest = line[i:].strip(" ")
    if " " in rest:
        raise _lp_malformed(f"unexpected text after the timestamp: {_short(rest)}")
    return tags, fields, rest


def _lp_scan_field_key(line: str, i: int) -> tuple[str, int]:
    n = len(line)
    buf: list[str] = []
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n and line[i + 1] in _LP_KEY_ESCAPES:
            buf.append(line[i + 1])
            i += 2
            continue
        if c in ", =":
            break
        buf.append(c)
        i += 1
    if i >= n or line[i] != "=":
        raise _lp_malformed(f"field {_short(''.join(buf))} has no '=value'")
    return "".join(buf), i + 1


def _lp_scan_field_value(line: str, i: int) -> tuple[str, int]:
    """Raw value text (quotes kept) and the index after it."""
    n = len(line)
    start = i
    if i < n and line[i] == '"':
        i += 1
        while i < n:
            c = line[i]
            if c == "\\":
                i += 2  # \" and \\ are escapes; any other backslash is literal, skipping it is harmless
                continue
            if c == '"':
                break
            i += 1
        if i >= n:
            raise _lp_malformed("unterminated string field")
        i += 1
        if i < n and line[i] not in ", ":
            raise _lp_malformed("text after a closing quote")
        return line[start:i], i
    while i < n and line[i] not in ", ":
        i += 1
    return line[start:i], i


def _lp_field_value(key: str, raw: str) -> float:
    """Field value to float; DecodeError non_numeric/non_finite (field-level) or malformed (line-level)."""
    if raw[0] == '"':
        raise DecodeError("non_numeric", f"field {_short(key)} is a string")
    if raw in _LP_BOOLS:
        raise DecodeError("non_numeric", f"field {_short(key)} is a boolean")
    suffix = raw[-1]
    if suffix == "i" or suffix == "u":
        digits = raw[:-1]
        body = digits[1:] if suffix == "i" and digits.startswith("-") else digits
        # isascii() first: str.isdigit() accepts e.g. superscripts, which int() refuses.
        if not (body.isascii() and body.isdigit() and len(body) <= 20):
            raise _lp_malformed(f"field {_short(key)} value {_short(raw)} is not an integer")
        number = int(digits)
        low, high = (-(2**63), _INT64_MAX) if suffix == "i" else (0, _UINT64_MAX)
        if not low <= number <= high:
            raise _lp_malformed(f"field {_short(key)} value {_short(raw)} is out of range")
        return float(number)
    value = _bare_number(raw)
    if value is None:
        raise _lp_malformed(f"field {_short(key)} value {_short(raw)} is not a valid field value")
    if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
        raise DecodeError("non_finite", f"field {_short(key)} value {_short(raw)} {_NOT_FINITE}")
    return value


def _lp_timestamp(raw: str) -> int:
    body = raw[1:] if raw.startswith("-") else raw
    if not (body.isascii() and body.isdigit() and len(body) <= 20):
        raise DecodeError("bad_timestamp", f"timestamp {_short(raw)} is not integer nanoseconds")
    ns = int(raw)
    if ns < 0:
        raise DecodeError("bad_timestamp", f"timestamp {raw} is negative")
    if ns > _INT64_MAX:
        raise DecodeError("bad_timestamp", f"timestamp {raw} is after 2262-04-11, beyond int64 nanoseconds")
    return ns


# --------------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------------
class Decoder:
    """Turns one MQTT message into :class:`Decoded` readings (see the module docstring for formats)."""

    __slots__ = ("template", "max_payload_bytes", "max_future_ns", "_now_ns")

    def __init__(
        self,
        template: TopicTemplate | str,
        *,
        max_payload_bytes: int = 65536,
        max_future_ns: int | None = None,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.template = template if isinstance(template, TopicTemplate) else TopicTemplate(template)
        self.max_payload_bytes = max_payload_bytes
        # Readings stamped further ahead of this machine's clock are refused: one glitched stamp
        # would otherwise make every later reading of its asset "late" for the detector.
        self.max_future_ns = max_future_ns
        self._now_ns = now_ns

    def decode(self, topic: str, payload: bytes) -> Decoded:
        """Decode one message; DecodeError(reason, detail) when nothing usable is in it."""
        decoded = self._decode(topic, payload)
        if self.max_future_ns is None:
            return decoded
        now = self._now_ns()
        limit = now + self.max_future_ns
        if all(reading.ts_ns <= limit for reading in decoded.readings):
            return decoded
        kept = tuple(reading for reading in decoded.readings if reading.ts_ns <= limit)
        problems = tuple(
            DecodeError(
                "future_timestamp",
                f"ts {_iso(reading.ts_ns)} is {(reading.ts_ns - now) / 1e9:.0f} s ahead of this machine's "
                f"clock (max_future_s={self.max_future_ns / 1e9:g}); check the sender's clock",
            )
            for reading in decoded.readings
            if reading.ts_ns > limit
        )
        if not kept:
            raise problems[0]
        return Decoded(kept, decoded.problems + problems)

    def _decode(self, topic: str, payload: bytes) -> Decoded:
        if len(payload) > self.max_payload_bytes:
            raise DecodeError("oversized", f"{len(payload)} bytes > max_payload_bytes={self.max_payload_bytes}")
        asset, sensor, tags = self.template.parse(topic)
        try:
            text = str(payload, "utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("bad_encoding", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        text = text.strip()
        if not text:
            raise DecodeError("no_values", "empty payload")
        first = text[0]
        if first == "{" or first == "[":
            return self._decode_json(text, asset, sensor, tags)
        if " " not in text and "\n" not in text and "=" not in text:
            return self._decode_bare(text, asset, sensor, tags)
        return self._decode_line_protocol(text, asset, tags)

    # -- JSON ----------------------------------------------------------------------------------
    def _decode_json(self, text: str, asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
        try:
            doc = json.loads(text)
        except RecursionError:
            raise DecodeError("malformed_json", "nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, and int() digit limits on huge literals
            raise DecodeError("malformed_json", _short(str(exc), 120)) from None
        if type(doc) is not dict:
            raise DecodeError("malformed_json", f"top level is a {type(doc).__name__}; {_JSON_SHAPES}")
        if "values" in doc:
            if "value" in doc:
                raise DecodeError("malformed_json", f"both 'value' and 'values' given; {_JSON_SHAPES}")
            return self._decode_frame(doc, asset, tags)
        if "value" in doc:
            return self._decode_single(doc, asset, sensor, tags)
        raise DecodeError("malformed_json", f"no 'values' or 'value' key; {_JSON_SHAPES}")

    def _decode_frame(self, doc: dict[str, Any], asset: str, tags: dict[str, str]) -> Decoded:
        raw_values = doc["values"]
        if type(raw_values) is not dict:
            raise DecodeError("malformed_json", f"'values' is a {type(raw_values).__name__}; {_JSON_SHAPES}")
        if not raw_values:
            raise DecodeError("no_values", "'values' is empty")
        _check_name("asset", asset)
        ts_ns = _json_ts_to_ns(doc.get("ts"), self._now_ns)
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
            ):
                values[name] = value
                continue
            try:
                _check_name("sensor", name)
                values[name] = _json_number(name, value)
            except DecodeError as exc:
                problems.append(exc)
        if not values:
            raise _first(problems)
        return Decoded((Reading(asset, ts_ns, values, tags),), tuple(problems))

    def _decode_single(self, doc: dict[str, Any], asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
        if sensor is None:
            sensor = doc.get("sensor")
            if sensor is None:
                raise DecodeError(
                    "missing_sensor",
                    f"single value but topic template {self.template.template!r} has no {{sensor}} "
                    "segment and the payload has no 'sensor' key",
                )
            if not isinstance(sensor, str):
                raise DecodeError("bad_name", f"'sensor' {_short(sensor)} is not a string")
        _check_name("asset", asset)
        _check_name("sensor", sensor)
        ts_ns = _json_ts_to_ns(doc.get("ts"), self._now_ns)
        value = _json_number(sensor, doc["value"])
        return Decoded((Reading(asset, ts_ns, {sensor: value}, tags),), ())

    # -- bare number ---------------------------------------------------------------------------
    def _decode_bare(self, text: str, asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
        value = _bare_number(text)
        if value is None:
            raise DecodeError("non_numeric", f"payload {_short(text)} is not a number, a JSON object or line protocol")
        if sensor is None:
            raise DecodeError(
                "missing_sensor",
                f"bare value but topic template {self.template.template!r} has no {{sensor}} segment",
            )
        _check_name("asset", asset)
        _check_name("sensor", sensor)
        if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            raise DecodeError("non_finite", f"sensor {_short(sensor)} value {_short(text)} {_NOT_FINITE}")
        return Decoded((Reading(asset, self._now_ns(), {sensor: value}, tags),), ())

    # -- line protocol -------------------------------------------------------------------------
    def _decode_line_protocol(self, text: str, asset: str, tags: dict[str, str]) -> Decoded:
        readings: list[Reading] = []
        problems: list[DecodeError] = []
        now: int | None = None  # one arrival time for every line without a timestamp
        lines = 0
        for number, line in enumerate(text.split("\n"), start=1):
            line = line.strip()
            if not line or line[0] == "#":
                continue
            lines += 1
            try:
                line_asset, ts_ns, values, line_tags, field_problems = _decode_lp_line(line, asset, tags)
            except DecodeError as exc:
                problems.append(DecodeError(exc.reason, f"line {number}: {exc.detail}"))
                continue
            problems.extend(DecodeError(p.reason, f"line {number}: {p.detail}") for p in field_problems)
            if not values:
                continue
            if ts_ns is None:
                if now is None:
                    now = self._now_ns()
                ts_ns = now
            readings.append(Reading(line_asset, ts_ns, values, line_tags))
        if not readings:
            if not lines:
                raise DecodeError("no_values", "line protocol payload has only comments and blank lines")
            raise _first(problems)
        return Decoded(tuple(readings), tuple(problems))


def _decode_lp_line(
    line: str, topic_asset: str, topic_tags: dict[str, str]
) -> tuple[str, int | None, dict[str, float], dict[str, str], list[DecodeError]]:
    """One line to (asset, ts_ns or None, good values, tags, field problems); raises for line-level errors."""
    line_tags, fields, raw_ts = _lp_split(line)
    asset = _check_name("asset", line_tags.pop("asset", topic_asset))
    ts_ns = _lp_timestamp(raw_ts) if raw_ts else None
    values: dict[str, float] = {}
    problems: list[DecodeError] = []
    for key, raw in fields:
        try:
            _check_name("sensor", key)
            value = _lp_field_value(key, raw)
        except DecodeError as exc:
            if exc.reason == "malformed_line_protocol":
                raise  # a syntax error makes the whole line untrustworthy
            problems.append(exc)
            continue
        values[key] = value  # a repeated key: the last wins, as in InfluxDB
    tags = {**topic_tags, **line_tags} if line_tags else topic_tags
    return asset, ts_ns, values, tags, problems


def _first(problems: list[DecodeError]) -> DecodeError:
    """The error to raise when every part of a message failed: the first, noting how many more."""
    first = problems[0]
    if len(problems) == 1:
        return first
    return DecodeError(first.reason, f"{first.detail} (and {len(problems) - 1} more problems)")


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
