"""What every payload format shares: the parser interface and the checks on names, numbers and problems.

A format is a class following :class:`PayloadParser`: built once per :class:`~ingest.decode.Decoder`
from a :class:`ParserContext`, it says whether a payload is its own (:meth:`~PayloadParser.claims`) and
turns it into readings (:meth:`~PayloadParser.parse`), raising :class:`~ingest.messages.DecodeError`
with one of :data:`SHARED_REASONS` or of its own ``reasons``. ``parse`` runs on paho's network thread
for every message: keep per-call work small.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from detector.types import MAX_ABS_VALUE  # beyond it the detector cannot use a value: refused as non_finite
from ingest.messages import Decoded, DecodeError, short

if TYPE_CHECKING:
    from ingest.topics import TopicTemplate

# Reasons any format may raise; a format lists the ones only it raises (its syntax errors) in ``reasons``.
SHARED_REASONS: tuple[str, ...] = (
    "missing_sensor",
    "no_values",
    "non_numeric",
    "non_finite",
    "bad_timestamp",
    "bad_name",
)

MAX_NAME_LEN = 128
NOT_FINITE = f"is not finite or beyond ±{MAX_ABS_VALUE:g}"
AFTER_INT64 = "is after 2262-04-11, beyond int64 nanoseconds"

# Control characters (C0, DEL, C1) and lone surrogates: the latter cannot be encoded to UTF-8, so a
# name holding one would fail later at the InfluxDB write instead of here.
_BAD_NAME_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class ParserContext:
    """What a parser gets from its decoder: the topic template (for messages) and the clock."""

    template: TopicTemplate
    now_ns: Callable[[], int]  # arrival time, for readings that carry none
    # False (the default): the asset and tags come from the topic, which broker ACLs can restrict per
    # device; a payload's own tags are ignored and an asset that differs from the topic's is refused.
    payload_tags: bool = False


class PayloadParser(Protocol):
    """One payload format. The class is the factory: ``Parser(context)``."""

    reasons: ClassVar[tuple[str, ...]]  # rejection reasons only this format raises

    def __init__(self, context: ParserContext) -> None: ...

    def claims(self, text: str) -> bool:
        """Whether ``text`` (the payload, UTF-8 decoded, stripped, not empty) is in this format; cheap."""
        ...

    def parse(self, text: str, asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
        """Readings of ``text``; ``asset``, ``sensor`` (None without a ``{sensor}`` segment) and ``tags`` come
        from the topic. Raises DecodeError when nothing usable is in it; part-failures go in ``problems``."""
        ...


def name_problem(name: str) -> str | None:
    """Why ``name`` is unusable as an asset or sensor name, or None when it is fine."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LEN:
        return f"is longer than {MAX_NAME_LEN} characters"
    # isprintable() is a fast C check that passes almost every real name; the regex decides the rest
    # (non-printable but acceptable characters such as U+00A0 only take this slower path).
    if not name.isprintable() and _BAD_NAME_CHARS.search(name):
        return "contains control characters"
    if '"' in name:  # VictoriaMetrics' line-protocol parser stores such a name corrupted, answering 204
        return 'contains a double quote ("), which InfluxDB-compatible databases do not store intact'
    return None


def check_name(kind: str, name: str) -> str:
    """``name`` itself, or DecodeError("bad_name") saying why the ``kind`` ("asset", "sensor") name is unusable."""
    if 0 < len(name) <= MAX_NAME_LEN and name.isprintable() and '"' not in name:  # the common case, no call
        return name
    problem = name_problem(name)
    if problem is not None:
        raise DecodeError("bad_name", f"{kind} name {short(name)} {problem}")
    return name


def parse_number(text: str) -> float | None:
    """``text`` as a number if it is one (ASCII, no digit separators), else None. Not range-checked."""
    if not text.isascii() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def first_problem(problems: list[DecodeError]) -> DecodeError:
    """The error to raise when every part of a message failed: the first, noting how many more."""
    first = problems[0]
    if len(problems) == 1:
        return first
    return DecodeError(first.reason, f"{first.detail} (and {len(problems) - 1} more problems)")
