"""InfluxDB line protocol, one or more lines: ``measurement[,tag=v...] field=value[,...] [timestamp]``.

Fields are the sensors; the measurement name is not used. The asset and tags are the topic's: broker
ACLs can limit a device to its own topic, so a line's ``asset`` tag that names another asset is
refused (``asset_mismatch``: a device could otherwise poison another asset's baseline) and its other
tags are ignored (each new tag value would be a new series). With ``mqtt.payload_tags`` the line's
``asset`` tag wins over the topic's and its tags are merged over the topic's (the line's win). ``12i``/``12u``
integers and floats are accepted; string and boolean fields are reported as ``non_numeric``.
Escapes (``\\ ``, ``\\,``, ``\\=``) and quoted string fields are understood; ``#`` lines are comments.
Timestamps are integer nanoseconds, as the line-protocol spec says; absent means the arrival time.

A bad line or field is a problem of its own: the message keeps the other lines and fields.
"""

from __future__ import annotations

from typing import ClassVar

from detector.types import MAX_ABS_VALUE
from ingest.formats.base import AFTER_INT64, NOT_FINITE, ParserContext, check_name, first_problem, parse_number
from ingest.messages import Decoded, DecodeError, Reading, short
from ingest.timestamps import INT64_MAX, INT64_MIN

__all__ = ["LineProtocolParser"]

_UINT64_MAX = 2**64 - 1
_BOOLS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})
_KEY_ESCAPES = ", ="  # characters a backslash escapes in measurement, tag and field keys, tag values


class LineProtocolParser:
    """Claims whatever the other formats leave (so it is tried last)."""

    reasons: ClassVar[tuple[str, ...]] = ("malformed_line_protocol", "asset_mismatch")

    def __init__(self, context: ParserContext) -> None:
        self._now_ns = context.now_ns
        self._payload_tags = context.payload_tags

    def claims(self, text: str) -> bool:
        return True

    def parse(self, text: str, asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
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
                line_asset, ts_ns, values, line_tags, field_problems = _decode_line(
                    line, asset, tags, self._payload_tags
                )
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
            raise first_problem(problems)
        return Decoded(tuple(readings), tuple(problems))


def _decode_line(
    line: str, topic_asset: str, topic_tags: dict[str, str], payload_tags: bool
) -> tuple[str, int | None, dict[str, float], dict[str, str], list[DecodeError]]:
    """One line to (asset, ts_ns or None, good values, tags, field problems); raises for line-level errors."""
    line_tags, fields, raw_ts = _split(line)
    asset = check_name("asset", line_tags.pop("asset", topic_asset))
    if not payload_tags:
        if asset != topic_asset:
            raise DecodeError(
                "asset_mismatch",
                f"asset tag {short(asset)} is not the topic's asset {short(topic_asset)} "
                "(set mqtt.payload_tags to let payloads name their asset)",
            )
        line_tags = {}
    ts_ns = _timestamp(raw_ts) if raw_ts else None
    values: dict[str, float] = {}
    problems: list[DecodeError] = []
    for key, raw in fields:
        try:
            check_name("sensor", key)
            value = _field_value(key, raw)
        except DecodeError as exc:
            if exc.reason == "malformed_line_protocol":
                raise  # a syntax error makes the whole line untrustworthy
            problems.append(exc)
            continue
        values[key] = value  # a repeated key: the last wins, as in InfluxDB
    tags = {**topic_tags, **line_tags} if line_tags else topic_tags
    return asset, ts_ns, values, tags, problems


def _malformed(detail: str) -> DecodeError:
    return DecodeError("malformed_line_protocol", detail)


_Line = tuple[dict[str, str], list[tuple[str, str]], str]


def _split(line: str) -> _Line:
    """Split one line into (tags, [(field key, raw value)], raw timestamp or "")."""
    if "\\" in line or '"' in line:
        return _split_escaped(line)
    return _split_plain(line)


def _split_plain(line: str) -> _Line:
    # Fast path: with no escapes and no quoted strings, every separator is literal.
    sections = [s for s in line.split(" ") if s]
    if len(sections) not in (2, 3):
        raise _malformed("expected 'measurement[,tag=value...] field=value[,...] [timestamp]'")
    series = sections[0].split(",")
    if not series[0]:
        raise _malformed("empty measurement")
    tags: dict[str, str] = {}
    for element in series[1:]:
        key, eq, value = element.partition("=")
        if not eq or not key or not value or "=" in value:
            raise _malformed(f"tag {short(element)} is not key=value")
        tags[key] = value
    fields: list[tuple[str, str]] = []
    for element in sections[1].split(","):
        key, eq, value = element.partition("=")
        if not eq or not key or not value:
            raise _malformed(f"field {short(element)} is not key=value")
        fields.append((key, value))
    return tags, fields, sections[2] if len(sections) == 3 else ""


def _split_escaped(line: str) -> _Line:
    # Slow path: a scanner that honours backslash escapes and double-quoted string field values.
    n = len(line)
    i = 0
    elements: list[list[str]] = []  # measurement, then tags, each split at unescaped '='
    parts: list[str] = []
    buf: list[str] = []
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n and line[i + 1] in _KEY_ESCAPES:
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
        raise _malformed("empty measurement")
    tags: dict[str, str] = {}
    for element in elements[1:]:
        if len(element) != 2 or not element[0] or not element[1]:
            raise _malformed(f"tag {short('='.join(element))} is not key=value")
        tags[element[0]] = element[1]
    while i < n and line[i] == " ":
        i += 1
    fields: list[tuple[str, str]] = []
    while True:
        key, i = _scan_field_key(line, i)
        value, i = _scan_field_value(line, i)
        if not key or not value:
            raise _malformed(f"field {short(key + '=' + value)} is not key=value")
        fields.append((key, value))
        if i < n and line[i] == ",":
            i += 1
            continue
        break
    rest = line[i:].strip(" ")
    if " " in rest:
        raise _malformed(f"unexpected text after the timestamp: {short(rest)}")
    return tags, fields, rest


def _scan_field_key(line: str, i: int) -> tuple[str, int]:
    n = len(line)
    buf: list[str] = []
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n and line[i + 1] in _KEY_ESCAPES:
            buf.append(line[i + 1])
            i += 2
            continue
        if c in ", =":
            break
        buf.append(c)
        i += 1
    if i >= n or line[i] != "=":
        raise _malformed(f"field {short(''.join(buf))} has no '=value'")
    return "".join(buf), i + 1


def _scan_field_value(line: str, i: int) -> tuple[str, int]:
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
            raise _malformed("unterminated string field")
        i += 1
        if i < n and line[i] not in ", ":
            raise _malformed("text after a closing quote")
        return line[start:i], i
    while i < n and line[i] not in ", ":
        i += 1
    return line[start:i], i


def _field_value(key: str, raw: str) -> float:
    """Field value to float; DecodeError non_numeric/non_finite (field-level) or malformed (line-level)."""
    if raw[0] == '"':
        raise DecodeError("non_numeric", f"field {short(key)} is a string")
    if raw in _BOOLS:
        raise DecodeError("non_numeric", f"field {short(key)} is a boolean")
    suffix = raw[-1]
    if suffix == "i" or suffix == "u":
        digits = raw[:-1]
        body = digits[1:] if suffix == "i" and digits.startswith("-") else digits
        # isascii() first: str.isdigit() accepts e.g. superscripts, which int() refuses.
        if not (body.isascii() and body.isdigit() and len(body) <= 20):
            raise _malformed(f"field {short(key)} value {short(raw)} is not an integer")
        number = int(digits)
        low, high = (INT64_MIN, INT64_MAX) if suffix == "i" else (0, _UINT64_MAX)
        if not low <= number <= high:
            raise _malformed(f"field {short(key)} value {short(raw)} is out of range")
        return float(number)
    value = parse_number(raw)
    if value is None:
        raise _malformed(f"field {short(key)} value {short(raw)} is not a valid field value")
    if not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
        raise DecodeError("non_finite", f"field {short(key)} value {short(raw)} {NOT_FINITE}")
    return value


def _timestamp(raw: str) -> int:
    body = raw[1:] if raw.startswith("-") else raw
    if not (body.isascii() and body.isdigit() and len(body) <= 20):
        raise DecodeError("bad_timestamp", f"timestamp {short(raw)} is not integer nanoseconds")
    ns = int(raw)
    if ns < 0:
        raise DecodeError("bad_timestamp", f"timestamp {raw} is negative")
    if ns > INT64_MAX:
        raise DecodeError("bad_timestamp", f"timestamp {raw} {AFTER_INT64}")
    return ns
