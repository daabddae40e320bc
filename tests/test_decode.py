"""Tests for ingest.decode, ingest.topics and ingest.formats: topic templates, the four payload formats, every
rejection reason."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.types import MAX_ABS_VALUE
from ingest.decode import REJECTION_REASONS, Decoder, rejection_reasons
from ingest.formats import FORMATS, ParserContext
from ingest.formats.line_protocol import _split_escaped as _lp_split_escaped
from ingest.formats.line_protocol import _split_plain as _lp_split_plain
from ingest.limits import PublisherLimits
from ingest.messages import Decoded, DecodeError, Reading
from ingest.topics import TopicTemplate

NOW = 1_700_000_000_123_456_789
INT64_MAX = 2**63 - 1
TS_2024_NS = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z


def now() -> int:
    return NOW


@pytest.fixture
def dec() -> Decoder:
    """Template with a tag and a sensor segment."""
    return Decoder(TopicTemplate("plant/{line}/{asset}/{sensor}"), now_ns=now)


@pytest.fixture
def frame_dec() -> Decoder:
    """Template without a sensor segment (frames / line protocol per asset)."""
    return Decoder("plantwatch/{asset}", now_ns=now)


@pytest.fixture
def tag_dec() -> Decoder:
    """As ``frame_dec``, with ``mqtt.payload_tags``: line protocol's asset and tags win over the topic's."""
    return Decoder("plantwatch/{asset}", now_ns=now, payload_tags=True)


def reject(decoder: Decoder, topic: str, payload: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decoder.decode(topic, payload)
    assert info.value.reason in REJECTION_REASONS
    return info.value


def only(decoded: Decoded) -> Reading:
    assert len(decoded.readings) == 1
    return decoded.readings[0]


# --------------------------------------------------------------------------------------------------
# TopicTemplate
# --------------------------------------------------------------------------------------------------
class TestTopicTemplate:
    def test_parse_with_tags_and_sensor(self) -> None:
        t = TopicTemplate("plant/{line}/{asset}/{sensor}")
        assert t.parse("plant/l1/pump-7/temp") == ("pump-7", "temp", {"line": "l1"})
        assert t.has_sensor and t.tag_names == ("line",)

    def test_parse_without_sensor(self) -> None:
        t = TopicTemplate("plantwatch/{asset}")
        assert t.parse("plantwatch/press-2") == ("press-2", None, {})
        assert not t.has_sensor

    @pytest.mark.parametrize(
        "topic",
        ["plant/l1/pump", "plant/l1/pump/temp/extra", "factory/l1/pump/temp", "plant/l1//temp", "plant/l1/pump/"],
    )
    def test_parse_rejects_non_matching_topics(self, topic: str) -> None:
        t = TopicTemplate("plant/{line}/{asset}/{sensor}")
        with pytest.raises(DecodeError) as info:
            t.parse(topic)
        assert info.value.reason == "unknown_topic"
        assert repr(topic)[:20] in info.value.detail

    @pytest.mark.parametrize(
        ("template", "message"),
        [
            ("plant/{line}/{sensor}", "no {asset}"),
            ("", "empty segment"),
            ("plant//{asset}", "empty segment"),
            ("plant/{asset}/{asset}", "appears twice"),
            ("plant/x{asset}", "whole"),
            ("plant/{as-set}/{asset}", "whole"),
            ("plant/+/{asset}", "wildcards"),
            ("plant/{asset}/#", "wildcards"),
        ],
    )
    def test_invalid_templates(self, template: str, message: str) -> None:
        with pytest.raises(ValueError, match="topic template") as info:
            TopicTemplate(template)
        assert message in str(info.value)

    def test_subscription(self) -> None:
        assert TopicTemplate("plant/{line}/{asset}/{sensor}").subscription() == "plant/+/+/+"
        assert TopicTemplate("plantwatch/{asset}").subscription() == "plantwatch/+"
        assert TopicTemplate("{asset}/data/{sensor}").subscription() == "+/data/+"

    def test_render_round_trips_through_parse(self) -> None:
        t = TopicTemplate("plant/{line}/{asset}/{sensor}")
        topic = t.render(asset="pump-7", sensor="temp", line="l1")
        assert topic == "plant/l1/pump-7/temp"
        assert t.parse(topic) == ("pump-7", "temp", {"line": "l1"})
        assert TopicTemplate("plantwatch/{asset}").render(asset="a") == "plantwatch/a"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"asset": "a", "sensor": "s"}, "needs a value for line"),
            ({"asset": "a", "sensor": "s", "line": "l", "zone": "z"}, "no segment for zone"),
            ({"asset": "a", "line": "l"}, "needs a sensor"),
            ({"asset": "a/b", "sensor": "s", "line": "l"}, "cannot be a topic segment"),
            ({"asset": "", "sensor": "s", "line": "l"}, "cannot be a topic segment"),
            ({"asset": "a", "sensor": "s", "line": "+"}, "cannot be a topic segment"),
        ],
    )
    def test_render_rejects_bad_values(self, kwargs: dict[str, str], message: str) -> None:
        t = TopicTemplate("plant/{line}/{asset}/{sensor}")
        with pytest.raises(ValueError, match=message):
            t.render(**kwargs)

    def test_render_sensor_without_sensor_segment(self) -> None:
        with pytest.raises(ValueError, match="no \\{sensor\\} segment"):
            TopicTemplate("plantwatch/{asset}").render(asset="a", sensor="s")


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------
class TestJson:
    def test_frame(self, frame_dec: Decoder) -> None:
        payload = b'{"ts": 1714564800, "values": {"temp": 21.5, "rpm": 1450, "vib": -0.25}}'
        decoded = frame_dec.decode("plantwatch/pump-7", payload)
        assert decoded.problems == ()
        assert only(decoded) == Reading("pump-7", TS_2024_NS, {"temp": 21.5, "rpm": 1450.0, "vib": -0.25}, {})
        assert all(type(v) is float for v in only(decoded).values.values())

    def test_frame_keeps_topic_tags(self, dec: Decoder) -> None:
        reading = only(dec.decode("plant/l2/pump/ignored", b'{"values": {"a": 1.0}}'))
        assert reading.tags == {"line": "l2"}
        assert reading.values == {"a": 1.0}  # topic sensor is not used for frames
        assert reading.ts_ns == NOW

    def test_frame_drops_bad_sensors_and_keeps_good_ones(self, frame_dec: Decoder) -> None:
        payload = b'{"values": {"ok": 1.5, "b": true, "s": "3", "n": null, "o": {}, "nan": NaN, "inf": -Infinity}}'
        decoded = frame_dec.decode("plantwatch/a", payload)
        assert only(decoded).values == {"ok": 1.5}
        assert [p.reason for p in decoded.problems] == ["non_numeric"] * 4 + ["non_finite"] * 2
        assert "'b'" in decoded.problems[0].detail

    def test_frame_all_bad_raises_first_reason(self, frame_dec: Decoder) -> None:
        err = reject(frame_dec, "plantwatch/a", b'{"values": {"x": Infinity, "y": "no"}}')
        assert err.reason == "non_finite"
        assert "1 more" in err.detail

    def test_frame_bad_sensor_name_is_a_problem(self, frame_dec: Decoder) -> None:
        payload = json.dumps({"values": {"ok": 1.0, "": 2.0, "x" * 129: 3.0, "t\u0007ab": 4.0, "nb\u00a0sp": 5.0}})
        decoded = frame_dec.decode("plantwatch/a", payload.encode())
        # U+00A0 is not printable but is no control character either: accepted.
        assert only(decoded).values == {"ok": 1.0, "nb\u00a0sp": 5.0}
        assert [p.reason for p in decoded.problems] == ["bad_name"] * 3
        assert "empty" in decoded.problems[0].detail
        assert "128" in decoded.problems[1].detail
        assert "control" in decoded.problems[2].detail

    def test_frame_huge_integer_is_non_finite(self, frame_dec: Decoder) -> None:
        decoded = frame_dec.decode("plantwatch/a", b'{"values": {"ok": 1, "big": 1' + b"0" * 400 + b"}}")
        assert only(decoded).values == {"ok": 1.0}
        assert decoded.problems[0].reason == "non_finite"

    def test_single_value_sensor_from_topic(self, dec: Decoder) -> None:
        reading = only(dec.decode("plant/l1/pump/temp", b'{"ts": 1714564800000, "value": 21.5}'))
        assert reading == Reading("pump", TS_2024_NS, {"temp": 21.5}, {"line": "l1"})

    def test_single_value_sensor_from_payload(self, frame_dec: Decoder) -> None:
        reading = only(frame_dec.decode("plantwatch/pump", b'{"sensor": "temp", "value": -3}'))
        assert reading == Reading("pump", NOW, {"temp": -3.0}, {})

    def test_single_value_topic_sensor_wins(self, dec: Decoder) -> None:
        reading = only(dec.decode("plant/l1/pump/temp", b'{"sensor": "other", "value": 1}'))
        assert reading.values == {"temp": 1.0}

    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            (b'{"value": 1}', "missing_sensor"),
            (b'{"sensor": 5, "value": 1}', "bad_name"),
            (b'{"sensor": "", "value": 1}', "bad_name"),
            (b'{"sensor": "t", "value": "1"}', "non_numeric"),
            (b'{"sensor": "t", "value": false}', "non_numeric"),
            (b'{"sensor": "t", "value": null}', "non_numeric"),
            (b'{"sensor": "t", "value": NaN}', "non_finite"),
            (b'{"sensor": "t", "value": 1e999}', "non_finite"),
        ],
    )
    def test_single_value_rejects(self, frame_dec: Decoder, payload: bytes, reason: str) -> None:
        assert reject(frame_dec, "plantwatch/pump", payload).reason == reason

    @pytest.mark.parametrize(
        "payload",
        [b"[1, 2]", b'{"foo": 1}', b'{"value": 1, "values": {"a": 1}}', b'{"values": [1, 2]}'],
    )
    def test_valid_json_of_the_wrong_shape(self, dec: Decoder, payload: bytes) -> None:
        err = reject(dec, "plant/l/a/s", payload)
        assert err.reason == "malformed_json"
        assert '"values"' in err.detail and '"value"' in err.detail  # says what shapes are expected

    @pytest.mark.parametrize("payload", [b'{"values": {"a": 1}', b"{'values': {}}", b"[" * 50_000])
    def test_invalid_json(self, dec: Decoder, payload: bytes) -> None:
        assert reject(dec, "plant/l/a/s", payload).reason == "malformed_json"

    def test_empty_values(self, frame_dec: Decoder) -> None:
        assert reject(frame_dec, "plantwatch/a", b'{"values": {}}').reason == "no_values"


# --------------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------------
class TestTimestamps:
    @pytest.mark.parametrize(
        ("ts", "expected"),
        [
            ("1714564800", TS_2024_NS),  # seconds
            ("1714564800.123", TS_2024_NS + 123_000_000),  # fractional seconds, to the microsecond
            ("1714564800123", TS_2024_NS + 123_000_000),  # milliseconds
            ("1714564800123.5", TS_2024_NS + 123_500_000),
            ("1714564800123456", TS_2024_NS + 123_456_000),  # microseconds
            ("1714564800123456789", TS_2024_NS + 123_456_789),  # nanoseconds
            ("0", 0),
            ("9223372036", 9_223_372_036 * 10**9),  # the last whole second before 2262-04-11T23:47:16.85Z
            ("100000000000", 100_000_000_000 * 10**6),  # smallest milliseconds value
            (str(INT64_MAX), INT64_MAX),
            ('"2024-05-01T12:00:00Z"', TS_2024_NS),
            ('"2024-05-01T14:00:00+02:00"', TS_2024_NS),
            ('"2024-05-01T07:00:00-05:00"', TS_2024_NS),
            ('"2024-05-01T12:00:00.123456789Z"', TS_2024_NS + 123_456_789),
            ('"2024-05-01T12:00:00.5Z"', TS_2024_NS + 500_000_000),
            ("null", NOW),
        ],
    )
    def test_accepted(self, frame_dec: Decoder, ts: str, expected: int) -> None:
        payload = f'{{"ts": {ts}, "values": {{"a": 1.0}}}}'.encode()
        assert only(frame_dec.decode("plantwatch/x", payload)).ts_ns == expected

    def test_absent_ts_is_now(self, frame_dec: Decoder) -> None:
        assert only(frame_dec.decode("plantwatch/x", b'{"value": 1, "sensor": "s"}')).ts_ns == NOW

    @pytest.mark.parametrize(
        ("ts", "detail"),
        [
            ('"2024-05-01T12:00:00"', "add a zone such as Z"),
            ('"2024-05-01"', "add a zone such as Z"),
            ('"yesterday"', "ISO-8601"),
            ('"1714564800"', "ISO-8601"),
            ("true", "epoch number"),
            ("[1]", "epoch number"),
            ("NaN", "not finite"),
            ("Infinity", "not finite"),
            ("-1", "negative"),
            ("-1.5", "negative"),
            (str(INT64_MAX + 1), "2262"),
            ("1e19", "2262"),
            ("99999999999.0", "2262"),  # the seconds band reaches beyond 2262 too
            ('"2263-01-01T00:00:00Z"', "2262"),
            ('"1969-12-31T23:59:59Z"', "1970"),
        ],
    )
    def test_rejected(self, frame_dec: Decoder, ts: str, detail: str) -> None:
        err = reject(frame_dec, "plantwatch/x", f'{{"ts": {ts}, "values": {{"a": 1.0}}}}'.encode())
        assert err.reason == "bad_timestamp"
        assert detail in err.detail


# --------------------------------------------------------------------------------------------------
# Bare numbers
# --------------------------------------------------------------------------------------------------
class TestBare:
    @pytest.mark.parametrize(("payload", "value"), [(b"21.5", 21.5), (b"-3e2", -300.0), (b" 7\r\n", 7.0)])
    def test_numbers(self, dec: Decoder, payload: bytes, value: float) -> None:
        assert only(dec.decode("plant/l1/pump/temp", payload)) == Reading("pump", NOW, {"temp": value}, {"line": "l1"})

    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            (b"NaN", "non_finite"),
            (b"-inf", "non_finite"),
            (b"1e999", "non_finite"),
            (b"ON", "non_numeric"),
            (b"true", "non_numeric"),
            (b"1_000", "non_numeric"),
            ("\u0661\u0662".encode(), "non_numeric"),  # Arabic-Indic digits: float() takes them, we don't
            (b"", "no_values"),
            (b"  \n", "no_values"),
        ],
    )
    def test_rejects(self, dec: Decoder, payload: bytes, reason: str) -> None:
        assert reject(dec, "plant/l1/pump/temp", payload).reason == reason

    def test_needs_sensor_from_topic(self, frame_dec: Decoder) -> None:
        err = reject(frame_dec, "plantwatch/pump", b"21.5")
        assert err.reason == "missing_sensor"
        assert "{sensor}" in err.detail

    def test_bad_names_from_topic(self, dec: Decoder) -> None:
        assert reject(dec, "plant/l1/pu\tmp/temp", b"1").reason == "bad_name"
        assert reject(dec, "plant/l1/pump/" + "s" * 129, b"1").reason == "bad_name"


# --------------------------------------------------------------------------------------------------
# Line protocol
# --------------------------------------------------------------------------------------------------
class TestLineProtocol:
    def test_basic_line(self, frame_dec: Decoder) -> None:
        decoded = frame_dec.decode("plantwatch/pump", b"machine temp=21.5,rpm=1450i,count=7u 1714564800000000000")
        assert decoded.problems == ()
        assert only(decoded) == Reading("pump", TS_2024_NS, {"temp": 21.5, "rpm": 1450.0, "count": 7.0}, {})

    def test_no_timestamp_is_now(self, frame_dec: Decoder) -> None:
        assert only(frame_dec.decode("plantwatch/pump", b"m temp=-1.5e1")).ts_ns == NOW

    def test_the_topic_names_the_asset_and_tags_and_a_line_may_not_name_another_asset(self, dec: Decoder) -> None:
        # A device that broker ACLs allow only on its own topic must not write as another asset.
        payload = b"m,asset=press-2,line=override,zone=z1 a=1 1714564800000000000"
        err = reject(dec, "plant/l1/pump/ignored", payload)
        assert err.reason == "asset_mismatch" and "'press-2'" in err.detail and "mqtt.payload_tags" in err.detail
        same = b"m,asset=pump,line=override,zone=z1 a=1 1714564800000000000\nm,asset=press-2 a=2"
        decoded = dec.decode("plant/l1/pump/ignored", same)
        assert [(r.asset, r.tags, r.values) for r in decoded.readings] == [("pump", {"line": "l1"}, {"a": 1.0})]
        assert [p.reason for p in decoded.problems] == ["asset_mismatch"]  # the other line, counted
        assert "asset_mismatch" in REJECTION_REASONS

    def test_with_payload_tags_the_lines_asset_and_tags_win(self) -> None:
        tagged = Decoder(TopicTemplate("plant/{line}/{asset}/{sensor}"), now_ns=now, payload_tags=True)
        payload = b"m,asset=press-2,line=override,zone=z1 a=1 1714564800000000000"
        reading = only(tagged.decode("plant/l1/pump/ignored", payload))
        assert reading.asset == "press-2"
        assert reading.tags == {"line": "override", "zone": "z1"}  # line's tags win over topic tags

    def test_non_numeric_fields_are_problems(self, frame_dec: Decoder) -> None:
        payload = b'm state="running, fast",ok=t,temp=20,on=FALSE,n=nan,i=inf 1714564800000000000'
        decoded = frame_dec.decode("plantwatch/pump", payload)
        assert only(decoded).values == {"temp": 20.0}
        assert [p.reason for p in decoded.problems] == ["non_numeric", "non_numeric", "non_numeric"] + [
            "non_finite"
        ] * 2
        assert all(p.detail.startswith("line 1: ") for p in decoded.problems)

    def test_escaping(self, tag_dec: Decoder) -> None:
        payload = (
            rb"my\ meas,asset=pump\ 7,loc=hall\,\ east,k\=x=v\=1 "
            rb'bearing\ temp=1,a\,b=2,c\=d=3,msg="say \"hi\", a=b c" 1714564800000000000'
        )
        decoded = tag_dec.decode("plantwatch/ignored", payload)
        reading = only(decoded)
        assert reading.asset == "pump 7"
        assert reading.tags == {"loc": "hall, east", "k=x": "v=1"}
        assert reading.values == {"bearing temp": 1.0, "a,b": 2.0, "c=d": 3.0}
        assert [p.reason for p in decoded.problems] == ["non_numeric"]

    def test_multiple_lines_and_comments(self, tag_dec: Decoder) -> None:
        payload = b"# header\nm,asset=a x=1 1000000000000000000\r\n\nm,asset=b x=2,y=3\n"
        decoded = tag_dec.decode("plantwatch/topic", payload)
        assert decoded.readings == (
            Reading("a", 10**18, {"x": 1.0}, {}),
            Reading("b", NOW, {"x": 2.0, "y": 3.0}, {}),
        )

    def test_bad_line_among_good_ones_is_a_problem(self, frame_dec: Decoder) -> None:
        payload = b"m x=1\nm x=oops\nm x=2 -5\nm,asset=\x01 x=3\nm x=4"
        decoded = frame_dec.decode("plantwatch/a", payload)
        assert [r.values for r in decoded.readings] == [{"x": 1.0}, {"x": 4.0}]
        assert [(p.reason, p.detail.split(":")[0]) for p in decoded.problems] == [
            ("malformed_line_protocol", "line 2"),
            ("bad_timestamp", "line 3"),
            ("bad_name", "line 4"),
        ]

    @pytest.mark.parametrize(
        "payload",
        [
            b"m x",
            b"m x=",
            b"m =1",
            b"m x=1,",
            b",t=1 x=1",
            b"m,t x=1",
            b"m,t= x=1",
            b"m x=1 2 3",
            b"m x=1.2.3",
            b"m x=12.5i",
            b"m x=-1u",
            b"m x=1_0",
            b"m x=99999999999999999999i",
            b'm x="unterminated',
            b'm x="a"b',
            b"m x=1\\ 2",
        ],
    )
    def test_malformed(self, frame_dec: Decoder, payload: bytes) -> None:
        err = reject(frame_dec, "plantwatch/a", payload)
        assert err.reason == "malformed_line_protocol" and err.detail.startswith("line 1: ")

    def test_single_word_is_a_bare_value_not_line_protocol(self, frame_dec: Decoder) -> None:
        err = reject(frame_dec, "plantwatch/a", b"machine")
        assert err.reason == "non_numeric" and "line protocol" in err.detail

    @pytest.mark.parametrize(
        ("ts", "detail"), [("-1", "negative"), (str(INT64_MAX + 1), "2262"), ("12.5", "integer"), ("1s", "integer")]
    )
    def test_bad_timestamps(self, frame_dec: Decoder, ts: str, detail: str) -> None:
        err = reject(frame_dec, "plantwatch/a", f"m x=1 {ts}".encode())
        assert err.reason == "bad_timestamp" and detail in err.detail

    def test_int64_limits(self, frame_dec: Decoder) -> None:
        payload = f"m a={-(2**63)}i,b={2**64 - 1}u {INT64_MAX}".encode()
        reading = only(frame_dec.decode("plantwatch/a", payload))
        assert reading.values == {"a": float(-(2**63)), "b": float(2**64 - 1)}
        assert reading.ts_ns == INT64_MAX

    def test_only_comments(self, frame_dec: Decoder) -> None:
        assert reject(frame_dec, "plantwatch/a", b"# nothing here\n# at all").reason == "no_values"

    def test_all_fields_bad(self, frame_dec: Decoder) -> None:
        err = reject(frame_dec, "plantwatch/a", b'm s="x",b=true')
        assert err.reason == "non_numeric" and err.detail.startswith("line 1: ")


# --------------------------------------------------------------------------------------------------
# Envelope: size, encoding, topic, and the reasons table
# --------------------------------------------------------------------------------------------------
REASON_EXAMPLES: list[tuple[str, str, bytes]] = [
    ("oversized", "plant/l/a/s", b"1" * 101),
    ("bad_encoding", "plant/l/a/s", b"\xff\xfe21"),
    ("unknown_topic", "elsewhere/a", b"1"),
    ("malformed_json", "plant/l/a/s", b"{nope"),
    ("malformed_line_protocol", "plant/l/a/s", b"m x=?"),
    ("asset_mismatch", "plant/l/a/s", b"m,asset=b x=1"),
    ("missing_sensor", "plant/l/a", b"1"),  # three segments: the template without {sensor}
    ("no_values", "plant/l/a/s", b'{"values": {}}'),
    ("non_numeric", "plant/l/a/s", b'{"value": "x"}'),
    ("non_finite", "plant/l/a/s", b'{"value": NaN}'),
    ("bad_timestamp", "plant/l/a/s", b'{"ts": "2024-05-01T00:00:00", "value": 1}'),
    ("future_timestamp", "plant/l/a/s", b'{"ts": "2100-01-01T00:00:00Z", "value": 1}'),
    ("bad_name", "plant/l/a/s\x00", b"1"),
]
# The limits' reasons (ingest/limits.py): after the first message, which takes asset a's one slot of
# each kind, the second is refused. (reason, second topic, second payload)
LIMIT_EXAMPLES: list[tuple[str, str, bytes]] = [
    ("too_many_assets", "plant/l/b/s", b"1"),
    ("too_many_sensors", "plant/l/a/t", b"1"),
    ("too_many_tags", "plant/m/a/s", b"1"),
]


class TestEnvelope:
    @pytest.mark.parametrize(("reason", "topic", "payload"), REASON_EXAMPLES)
    def test_every_reason(self, reason: str, topic: str, payload: bytes) -> None:
        template = "plant/{line}/{asset}/{sensor}" if topic.count("/") == 3 else "plant/{line}/{asset}"
        decoder = Decoder(template, max_payload_bytes=100, max_future_ns=300 * 10**9, now_ns=now)
        assert reject(decoder, topic, payload).reason == reason

    @pytest.mark.parametrize(("reason", "topic", "payload"), LIMIT_EXAMPLES)
    def test_every_limit(self, reason: str, topic: str, payload: bytes) -> None:
        limits = PublisherLimits(max_assets=1, max_sensors_per_asset=1, max_tags_per_asset=1)
        decoder = Decoder("plant/{line}/{asset}/{sensor}", now_ns=now, limits=limits)
        assert only(decoder.decode("plant/l/a/s", b"1")).values == {"s": 1.0}
        assert reject(decoder, topic, payload).reason == reason

    def test_reason_table_is_complete(self) -> None:
        examples = [*REASON_EXAMPLES, *LIMIT_EXAMPLES]
        assert sorted(r for r, _, _ in examples) == sorted(REJECTION_REASONS)
        assert len(set(REJECTION_REASONS)) == len(REJECTION_REASONS)

    def test_oversized_is_checked_before_anything_else(self) -> None:
        decoder = Decoder("plant/{asset}", max_payload_bytes=4)
        err = reject(decoder, "not/a/known/topic", b"\xff\xff\xff\xff\xff")
        assert err.reason == "oversized"
        assert "5 bytes" in err.detail
        # exactly the limit is not oversized: decoding goes on (and needs a sensor for a bare number)
        assert reject(decoder, "plant/a", b"1234").reason == "missing_sensor"

    def test_accepts_bytearray_and_memoryview(self, dec: Decoder) -> None:
        assert only(dec.decode("plant/l/a/s", bytearray(b"1.5"))).values == {"s": 1.5}  # type: ignore[arg-type]
        assert only(dec.decode("plant/l/a/s", memoryview(b"2.5"))).values == {"s": 2.5}  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------
_LP_CHARS = st.sampled_from(list('m x=,"\\ \n#it.e-+0123456789ufaTNnI\t\x00é'))
_json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
_json_doc = st.recursive(
    _json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
_json_shaped = st.fixed_dictionaries(
    {},
    optional={
        "ts": _json_leaf | st.text(max_size=30),
        "value": _json_doc,
        "values": st.dictionaries(st.text(max_size=12), _json_doc, max_size=5) | _json_leaf,
        "sensor": _json_leaf,
    },
)
_payloads = st.one_of(
    st.binary(max_size=300),
    st.text(_LP_CHARS, max_size=120).map(str.encode),
    _json_doc.map(lambda d: json.dumps(d).encode()),
    _json_shaped.map(lambda d: json.dumps(d).encode()),
)
_topics = st.one_of(
    st.text(max_size=40),
    st.lists(st.text(st.characters(blacklist_characters="/"), max_size=6), min_size=1, max_size=5).map("/".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=_topics, payload=_payloads, with_sensor=st.booleans())
def test_decode_only_ever_raises_decode_error(topic: str, payload: bytes, with_sensor: bool) -> None:
    decoder = Decoder("{asset}/{sensor}" if with_sensor else "{site}/{asset}", max_payload_bytes=256, now_ns=now)
    try:
        decoded = decoder.decode(topic, payload)
    except DecodeError as exc:
        assert exc.reason in REJECTION_REASONS
        return
    assert decoded.readings  # success always carries something
    for reading in decoded.readings:
        assert reading.values and 0 <= reading.ts_ns <= INT64_MAX
        assert all(type(v) is float and math.isfinite(v) for v in reading.values.values())
        assert all(0 < len(name) <= 128 for name in [reading.asset, *reading.values])
    assert all(p.reason in REJECTION_REASONS for p in decoded.problems)


# Any printable name but one with a double quote (refused: bad_name, see test_a_name_with_a_double_quote...)
_names = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"'), min_size=1, max_size=128)
_finite = st.floats(min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE)  # the values the decoder keeps


@settings(max_examples=150, deadline=None)
@given(
    values=st.dictionaries(_names, _finite | st.integers(-(2**53), 2**53), min_size=1, max_size=10),
    ts=st.one_of(
        st.integers(100_000_000_000, INT64_MAX // 1_000_000).map(lambda ms: ("ms", ms)),  # 1973..2262
        st.integers(10**17, INT64_MAX).map(lambda ns: ("ns", ns)),
    ),
)
def test_json_frame_round_trip(values: dict[str, float], ts: tuple[str, int]) -> None:
    unit, number = ts
    expected_ns = number * 1_000_000 if unit == "ms" else number
    reading = only(Decoder("p/{asset}").decode("p/a", json.dumps({"ts": number, "values": values}).encode()))
    assert reading.ts_ns == expected_ns
    assert reading.values == {k: float(v) for k, v in values.items()}


def _lp_escape(text: str) -> str:
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


# Names for the line-protocol round trip: no backslash (a trailing one would escape the separator, as in
# InfluxDB), no newline (it ends the line), not starting with '#' where a line could start.
_lp_names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters='\\"'),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(
    asset=_lp_names,
    site=_lp_names,
    fields=st.dictionaries(_lp_names, _finite | st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=6),
    ts=st.none() | st.integers(0, INT64_MAX),
)
def test_line_protocol_round_trip(asset: str, site: str, fields: dict[str, float], ts: int | None) -> None:
    rendered = ",".join(
        f"{_lp_escape(k)}={v}i" if isinstance(v, int) else f"{_lp_escape(k)}={v!r}" for k, v in fields.items()
    )
    line = f"my\\ measurement,asset={_lp_escape(asset)},site={_lp_escape(site)} {rendered}"
    if ts is not None:
        line += f" {ts}"
    reading = only(Decoder("x/{asset}", now_ns=now, payload_tags=True).decode("x/topic-asset", line.encode()))
    assert reading.asset == asset
    assert reading.tags == {"site": site}
    assert reading.values == {k: float(v) for k, v in fields.items()}
    assert reading.ts_ns == (NOW if ts is None else ts)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(list("m x=,1.5i#\t-")), max_size=40))
def test_line_protocol_fast_and_escaped_scanners_agree(line: str) -> None:
    # The fast path only runs on lines without backslashes or quotes; on those both must agree exactly.
    # (The decoder strips each line first, so only stripped lines are compared.)
    line = line.strip()

    def outcome(split: Callable[[str], object]) -> object:
        try:
            return split(line)
        except DecodeError as exc:
            return exc.reason

    assert outcome(_lp_split_plain) == outcome(_lp_split_escaped)


def test_readings_stamped_ahead_of_the_clock_are_refused_one_by_one() -> None:
    decoder = Decoder("plantwatch/{asset}", max_future_ns=300 * 10**9, now_ns=now)
    soon = now() + 299 * 10**9  # within the allowed clock skew
    assert only(decoder.decode("plantwatch/p", json.dumps({"ts": soon, "values": {"a": 1.0}}).encode())).ts_ns == soon
    glitch = 4_102_444_800 * 10**9  # 2100-01-01: one bad stamp would make every later reading late
    with pytest.raises(DecodeError) as err:
        decoder.decode("plantwatch/p", json.dumps({"ts": glitch, "values": {"a": 1.0}}).encode())
    assert err.value.reason == "future_timestamp" and "2100-01-01T00:00:00Z" in err.value.detail
    lines = f"m,asset=p a=1 {soon}\nm,asset=p a=2 {glitch}\n".encode()
    decoded = decoder.decode("plantwatch/p", lines)
    assert [r.ts_ns for r in decoded.readings] == [soon]
    assert [p.reason for p in decoded.problems] == ["future_timestamp"]
    assert "future_timestamp" in REJECTION_REASONS


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("plantwatch/p", b'{"values": {"a": 1.7976931348623157e308, "b": 1.0}}'),  # DBL_MAX as "invalid"
        ("plantwatch/p", b'{"values": {"a": -1e200, "b": 1.0}}'),
        ("plantwatch/p", b'{"values": {"a": ' + str(10**200).encode() + b', "b": 1.0}}'),
        ("plantwatch/p", b"m,asset=p a=1e151,b=1"),
    ],
)
def test_values_whose_squares_overflow_are_refused_as_non_finite(topic: str, payload: bytes) -> None:
    decoded = Decoder("plantwatch/{asset}", now_ns=now).decode(topic, payload)
    assert [set(r.values) for r in decoded.readings] == [{"b"}]
    assert [p.reason for p in decoded.problems] == ["non_finite"] and "beyond ±1e+150" in decoded.problems[0].detail
    bare = Decoder("plantwatch/{asset}/{sensor}", now_ns=now)
    assert reject(bare, "plantwatch/p/a", b"-2e150").reason == "non_finite"


# --------------------------------------------------------------------------------------------------
# The format registry: a new format is a new parser class
# --------------------------------------------------------------------------------------------------
class _Pairs:
    """A toy format, ``sensor:value;sensor:value``, to show what a new format module provides."""

    reasons = ("malformed_pairs",)

    def __init__(self, context: ParserContext) -> None:
        self._now_ns = context.now_ns

    def claims(self, text: str) -> bool:
        return ":" in text and " " not in text and "=" not in text

    def parse(self, text: str, asset: str, sensor: str | None, tags: dict[str, str]) -> Decoded:
        try:
            values = {name: float(value) for name, value in (pair.split(":") for pair in text.split(";"))}
        except ValueError:
            raise DecodeError("malformed_pairs", f"{text!r} is not sensor:value pairs") from None
        return Decoded((Reading(asset, self._now_ns(), values, tags),), ())


def test_default_formats_in_detection_order() -> None:
    assert list(FORMATS) == ["json", "number", "line_protocol"]
    assert {"malformed_json", "malformed_line_protocol"} <= set(REJECTION_REASONS)


def test_a_new_format_plugs_in_before_the_catch_all() -> None:
    formats = [FORMATS["json"], _Pairs, FORMATS["number"], FORMATS["line_protocol"]]
    decoder = Decoder("plantwatch/{asset}", now_ns=now, formats=formats)
    assert only(decoder.decode("plantwatch/p", b"a:1.5;b:2")) == Reading("p", NOW, {"a": 1.5, "b": 2.0}, {})
    assert only(decoder.decode("plantwatch/p", b'{"values": {"a": 1.0}}')).values == {"a": 1.0}
    assert only(decoder.decode("plantwatch/p", b"m a=3 5")).ts_ns == 5
    with pytest.raises(DecodeError) as err:
        decoder.decode("plantwatch/p", b"a:x")
    assert err.value.reason == "malformed_pairs" and "malformed_pairs" in rejection_reasons(formats)


def test_a_payload_no_format_claims_is_no_values() -> None:
    decoder = Decoder("plantwatch/{asset}", now_ns=now, formats=[FORMATS["json"]])
    err = reject(decoder, "plantwatch/p", b"m a=1")
    assert err.reason == "no_values" and "none of the formats" in err.detail


def test_a_name_with_a_double_quote_is_refused_as_the_database_would_corrupt_it(frame_dec: Decoder) -> None:
    err = reject(frame_dec, "plantwatch/pump", b'{"values": {"flow \\"in\\"": 1.0}}')
    assert err.reason == "bad_name" and "double quote" in err.detail
    assert reject(frame_dec, 'plantwatch/pu"mp', b'{"values": {"flow": 1.0}}').reason == "bad_name"
    decoded = frame_dec.decode("plantwatch/pump", b'm a"b=1,c=2')
    assert [r.values for r in decoded.readings] == [{"c": 2.0}] and [p.reason for p in decoded.problems] == ["bad_name"]
