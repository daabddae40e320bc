"""Time in plantwatch: UTC epoch nanoseconds in an int64, read from ISO-8601 text or epoch numbers.

Every time plantwatch stores is a count of nanoseconds since 1970-01-01T00:00:00Z that fits an int64,
as InfluxDB, numpy's ``datetime64[ns]`` and the alert stores keep it: 1677-09-21 to 2262-04-11.
The readers here return plain Python ints and leave the range check to the caller, which knows what
to say (the decoder also refuses times before 1970; the API and the log reader allow them).

* :func:`iso_to_ns`: ISO-8601 text; whether a time without a zone is UTC or refused is the caller's
  explicit choice. Fraction digits are kept down to the nanosecond.
* :func:`epoch_unit_ns` / :func:`epoch_to_ns`: epoch numbers, whose unit (s, ms, µs, ns) is told from
  their magnitude.
* :func:`ns_to_datetime` / :func:`ns_to_iso`: the way back, for output.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "NS_PER_S",
    "OUTSIDE_INT64",
    "TimeParseError",
    "epoch_to_ns",
    "epoch_unit_ns",
    "iso_to_ns",
    "ns_to_datetime",
    "ns_to_iso",
]

NS_PER_S = 1_000_000_000
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1  # 2262-04-11T23:47:16.854775807Z
OUTSIDE_INT64 = "is outside the years 1677-2262 that plantwatch can store"  # follows the quoted time

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


Problem = Literal["syntax", "no_zone"]


class TimeParseError(ValueError):
    """Text that is not a time under the rules asked for.

    ``problem`` names the rule broken (``"syntax"`` or ``"no_zone"``) for callers with messages of
    their own; ``str(exc)`` says it in words that follow the quoted text ("'x' has no time zone; ...").
    """

    def __init__(self, problem: Problem, why: str) -> None:
        super().__init__(why)
        self.problem: Problem = problem
        self.why = why


def iso_to_ns(text: str, *, naive_is_utc: bool) -> int:
    """ISO-8601 text to epoch nanoseconds (not range-checked: may lie outside int64).

    ``naive_is_utc``: a time without a zone is UTC (logs written in UTC), or refused with problem
    ``"no_zone"`` (live input and queries, where the sender's zone is unknown). Fraction digits past
    the microsecond, which :meth:`datetime.fromisoformat` drops, are kept to the nanosecond.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimeParseError("syntax", "is not an ISO-8601 time such as 2024-05-01T12:00:00Z") from None
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise TimeParseError("no_zone", "has no time zone; add a zone such as Z or +02:00")
        delta = parsed - _EPOCH_NAIVE
    else:
        try:
            delta = parsed - _EPOCH
        except OverflowError:  # near the years 1 and 9999 the conversion to UTC leaves datetime's range
            delta = parsed.replace(tzinfo=None) - _EPOCH_NAIVE - (parsed.utcoffset() or timedelta(0))
    seconds = delta.days * 86_400 + delta.seconds
    return seconds * NS_PER_S + delta.microseconds * 1_000 + _sub_microsecond_ns(text)


def _sub_microsecond_ns(text: str) -> int:
    """Nanoseconds in the 7th to 9th fraction digits of the seconds (fromisoformat truncates after the 6th).

    A fraction after the zone designator belongs to a UTC offset such as ``+01:00:00.5`` and is left to
    fromisoformat. (Index 10 is past any date form's own ``-``.)
    """
    dot = text.find(".", 10)
    if dot < 0:
        dot = text.find(",", 10)
        if dot < 0:
            return 0
    end = dot + 1
    while end < len(text) and text[end] in "0123456789":
        end += 1
    extra = text[dot + 7 : min(end, dot + 10)]
    if not extra:
        return 0
    before = text[10:dot]  # checked only now: most times have no digits past the microsecond
    if "+" in before or "-" in before or "Z" in before or "z" in before:
        return 0
    return int(extra.ljust(3, "0"))


def epoch_unit_ns(magnitude: float) -> int:
    """Nanoseconds per unit of an epoch number this large (absolute value): 1e9 for seconds ... 1.

    Epoch numbers carry no unit, so it is told from the magnitude: below 1e11 seconds, below 1e14
    milliseconds, below 1e17 microseconds, else nanoseconds. Each band spans 1973-03-03 to 5138-11-16
    in its own unit, so any time after March 1973 is read in the unit it was sent in.
    """
    # An if-chain, not a loop over a table: the decoder calls this for every JSON message.
    if magnitude < 1e11:
        return NS_PER_S
    if magnitude < 1e14:
        return 1_000_000
    if magnitude < 1e17:
        return 1_000
    return 1


def epoch_to_ns(number: int | float) -> int:
    """A finite epoch number in the unit its magnitude implies, to nanoseconds (not range-checked).

    Integers are exact. Floats are resolved to the microsecond, the best a float can do for present-day
    epochs: rounding finer turns 1714564800.123 into .122999907 instead of .123000000.
    """
    # The bands of epoch_unit_ns, written out: the decoder calls this for every JSON message.
    magnitude = number if number >= 0 else -number
    if type(number) is int:
        if magnitude < 1e11:
            return number * NS_PER_S
        if magnitude < 1e14:
            return number * 1_000_000
        return number * 1_000 if magnitude < 1e17 else number
    if magnitude < 1e11:
        return round(number * 1e6) * 1_000
    if magnitude < 1e14:
        return round(number * 1e3) * 1_000
    return round(number) * 1_000 if magnitude < 1e17 else round(number)


def ns_to_datetime(ns: int) -> datetime:
    """UTC datetime of epoch nanoseconds, to the microsecond (integer arithmetic: a float loses µs today)."""
    seconds, rem_ns = divmod(ns, NS_PER_S)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rem_ns // 1_000)


def ns_to_iso(ns: int, *, timespec: str = "seconds") -> str:
    """ISO-8601 UTC text with a Z suffix, e.g. ``2024-05-01T12:00:00Z`` (``timespec`` as in datetime.isoformat)."""
    return ns_to_datetime(ns).isoformat(timespec=timespec).replace("+00:00", "Z")
