"""ingest.timestamps, the one time module, and the callers that keep their own messages on top of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import HTTPException

from api.instants import parse_instant
from ingest.timestamps import (
    INT64_MAX,
    INT64_MIN,
    TimeParseError,
    epoch_to_ns,
    epoch_unit_ns,
    iso_to_ns,
    ns_to_datetime,
    ns_to_iso,
)
from plantwatch.offline.evaluation import parse_time_ns

T0 = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", T0),
        ("2024-05-01T14:00:00+02:00", T0),
        ("2024-05-01T07:00:00-05:00", T0),
        ("2024-05-01T12:00:00.123456789Z", T0 + 123_456_789),  # past fromisoformat's microseconds
        ("2024-05-01T12:00:00,5Z", T0 + 500_000_000),
        ("2024-05-01T12:00:00.1234567891234Z", T0 + 123_456_789),  # beyond nanoseconds: cut
        ("1969-12-31T23:59:59Z", -1_000_000_000),  # no range rule here: callers decide
    ],
)
def test_zoned_iso_text(text: str, expected: int) -> None:
    assert iso_to_ns(text, naive_is_utc=False) == expected
    assert iso_to_ns(text, naive_is_utc=True) == expected


def test_naive_text_is_utc_or_refused_as_the_caller_says() -> None:
    assert iso_to_ns("2024-05-01 12:00:00.000000001", naive_is_utc=True) == T0 + 1
    with pytest.raises(TimeParseError) as err:
        iso_to_ns("2024-05-01 12:00:00", naive_is_utc=False)
    assert err.value.problem == "no_zone" and "add a zone such as Z" in str(err.value)


def test_digits_of_a_utc_offset_are_not_read_as_the_times_nanoseconds() -> None:
    # fromisoformat takes an offset with a seconds fraction; past its microsecond, those digits are the
    # offset's (dropped, as fromisoformat drops them), never the time's own.
    coarse = iso_to_ns("2024-05-01T12:00:00+01:00:00.123456", naive_is_utc=False)
    assert iso_to_ns("2024-05-01T12:00:00+01:00:00.1234567", naive_is_utc=False) == coarse
    assert iso_to_ns("2024-05-01T12:00:00.000000999+01:00:00.1234567", naive_is_utc=False) == coarse + 999
    assert iso_to_ns("20240501T120000.1234567-0100", naive_is_utc=False) == 1714568400123456700


def test_syntax_error() -> None:
    with pytest.raises(TimeParseError) as err:
        iso_to_ns("yesterday", naive_is_utc=True)
    assert err.value.problem == "syntax" and "ISO-8601" in err.value.why


def test_extreme_years_do_not_overflow_and_fall_outside_int64() -> None:
    # An aware datetime converted to UTC overflows here; the arithmetic used cannot.
    early = iso_to_ns("0001-01-01T00:00:00+01:00", naive_is_utc=False)
    late = iso_to_ns("9999-12-31T23:59:59-01:00", naive_is_utc=False)
    assert early < INT64_MIN and late > INT64_MAX


@pytest.mark.parametrize(
    ("magnitude", "unit_ns"),
    [(0, 10**9), (99_999_999_999, 10**9), (1e11, 10**6), (1e14, 10**3), (1e17, 1), (9e18, 1)],
)
def test_epoch_unit_from_magnitude(magnitude: float, unit_ns: int) -> None:
    assert epoch_unit_ns(magnitude) == unit_ns


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1_714_564_800, T0),
        (1_714_564_800.123, T0 + 123_000_000),  # floats to the microsecond, not .122999907
        (1_714_564_800_123, T0 + 123_000_000),
        (1_714_564_800_123_456, T0 + 123_456_000),
        (T0 + 7, T0 + 7),
        (float(T0), T0),
    ],
)
def test_epoch_to_ns(number: int | float, expected: int) -> None:
    assert epoch_to_ns(number) == expected


def test_formatters() -> None:
    assert ns_to_datetime(T0 + 123_456_789) == datetime(2024, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    assert ns_to_datetime(-1) == datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert ns_to_iso(T0 + 999_999_999) == "2024-05-01T12:00:00Z"
    assert ns_to_iso(T0 + 500_000_000, timespec="milliseconds") == "2024-05-01T12:00:00.500Z"


def test_api_since_keeps_its_messages_and_now_nanoseconds_of_iso_text() -> None:
    assert parse_instant("2024-05-01T12:00:00.000000001Z", "since") == T0 + 1
    for text, message in [("2024-05-01T12:00:00", "must include a zone"), ("soon", "or epoch seconds")]:
        with pytest.raises(HTTPException) as err:
            parse_instant(text, "since")
        assert err.value.status_code == 422 and message in str(err.value.detail)


def test_nab_window_times() -> None:
    assert parse_time_ns("2014-02-19 10:50:00.000000") == 1_392_807_000 * 10**9
    with pytest.raises(ValueError, match="window time 'someday' is not an ISO-8601 time"):
        parse_time_ns("someday")
    with pytest.raises(ValueError, match="outside the years 1677-2262"):
        parse_time_ns("2300-01-01 00:00:00")
