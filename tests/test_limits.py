"""Tests for ingest.limits: what publishers can create (assets, sensors, tags), alone and behind the decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.config import MonitorConfig
from detector.monitor import AssetMonitor
from ingest.decode import REJECTION_REASONS, Decoder
from ingest.limits import LIMIT_REASONS, PublisherLimits
from ingest.messages import Decoded, DecodeError, Reading
from ingest.topics import TopicTemplate
from plantwatch.maintenance.tracker import MaintenanceTracker
from plantwatch.service.persistence import ModelPersistence
from plantwatch.service.wiring import publisher_limits
from plantwatch.settings import load_settings

NOW = 1_700_000_000_000_000_000


def now() -> int:
    return NOW


def limits(assets: int = 3, sensors: int = 4, tags: int = 2) -> PublisherLimits:
    return PublisherLimits(max_assets=assets, max_sensors_per_asset=sensors, max_tags_per_asset=tags)


def reading(asset: str, *sensors: str, **tags: str) -> Reading:
    return Reading(asset, NOW, {name: float(i) for i, name in enumerate(sensors)}, tags)


def one(*readings: Reading) -> Decoded:
    return Decoded(readings, ())


def refused(lim: PublisherLimits, decoded: Decoded) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        lim.admit(decoded)
    return info.value


class TestAssets:
    def test_new_assets_beyond_the_limit_are_refused_and_the_admitted_ones_still_pass(self) -> None:
        lim = limits(assets=2)
        for asset in ("a", "b"):
            assert lim.admit(one(reading(asset, "x"))).readings == (reading(asset, "x"),)
        err = refused(lim, one(reading("c", "x")))
        assert err.reason == "too_many_assets"
        assert "'c'" in err.detail and "mqtt.max_assets=2" in err.detail
        assert lim.assets == 2
        assert lim.admit(one(reading("a", "x"))).readings == (reading("a", "x"),)
        assert lim.admit(one(reading("b", "x"))).readings == (reading("b", "x"),)
        assert refused(lim, one(reading("c", "x"))).reason == "too_many_assets"  # refused for good
        assert lim.assets == 2

    def test_a_message_of_several_assets_keeps_the_admitted_ones(self) -> None:
        lim = limits(assets=2)
        lim.admit(one(reading("a", "x")))
        decoded = lim.admit(Decoded((reading("a", "x"), reading("b", "x"), reading("c", "x")), ()))
        assert [r.asset for r in decoded.readings] == ["a", "b"]
        assert [p.reason for p in decoded.problems] == ["too_many_assets"]

    def test_earlier_problems_are_kept(self) -> None:
        earlier = DecodeError("non_numeric", "sensor 'y' value 'z' is not a number")
        lim = limits(assets=1)
        lim.admit(one(reading("a", "x")))
        decoded = lim.admit(Decoded((reading("a", "x"), reading("b", "x")), (earlier,)))
        assert decoded.readings == (reading("a", "x"),)
        assert [p.reason for p in decoded.problems] == ["non_numeric", "too_many_assets"]

    def test_an_asset_refused_for_its_tags_takes_no_slot(self) -> None:
        lim = limits(assets=1, tags=1)
        assert refused(lim, one(reading("a", "x", line="1", site="n"))).reason == "too_many_tags"
        assert lim.assets == 0
        assert lim.admit(one(reading("b", "x", line="1"))).readings[0].asset == "b"


class TestSensors:
    def test_only_the_new_sensors_beyond_the_limit_are_dropped(self) -> None:
        lim = limits(sensors=3)
        lim.admit(one(reading("a", "x", "y")))
        decoded = lim.admit(one(reading("a", "x", "y", "z", "w", "v")))
        assert decoded.readings == (Reading("a", NOW, {"x": 0.0, "y": 1.0, "z": 2.0}, {}),)
        [problem] = decoded.problems
        assert problem.reason == "too_many_sensors"
        assert "has its 3 sensors" in problem.detail and "2 new ones dropped" in problem.detail
        assert "'w'" in problem.detail
        assert lim.sensors_of("a") == {"x", "y", "z"}
        # the admitted sensors keep passing, unchanged and without a problem
        again = one(reading("a", "z", "x"))
        assert lim.admit(again) is again

    def test_a_reading_of_new_sensors_only_is_refused_when_there_is_no_room(self) -> None:
        lim = limits(sensors=1)
        lim.admit(one(reading("a", "x")))
        err = refused(lim, one(reading("a", "y", "w")))
        assert err.reason == "too_many_sensors" and "2 new ones dropped" in err.detail
        assert lim.sensors_of("a") == {"x"}

    def test_a_huge_first_frame_admits_the_first_names_up_to_the_limit(self) -> None:
        lim = limits(sensors=200)
        names = [f"s{i}" for i in range(4000)]
        decoded = lim.admit(one(reading("a", *names)))
        assert list(decoded.readings[0].values) == names[:200]
        assert decoded.problems[0].reason == "too_many_sensors" and "3800 new ones" in decoded.problems[0].detail
        assert len(decoded.problems) == 1  # one problem per reading, not one per dropped name

    def test_the_limit_is_per_asset(self) -> None:
        lim = limits(sensors=2)
        lim.admit(one(reading("a", "x", "y")))
        assert lim.admit(one(reading("b", "z", "w"))).problems == ()
        assert lim.sensors_of("b") == {"z", "w"}
        assert lim.sensors_of("nobody") == frozenset()

    def test_two_readings_of_one_new_asset_in_one_message_share_its_room(self) -> None:
        lim = limits(assets=1, sensors=3)
        decoded = lim.admit(Decoded((reading("a", "x", "y"), reading("a", "z", "w")), ()))
        assert [dict(r.values) for r in decoded.readings] == [{"x": 0.0, "y": 1.0}, {"z": 0.0}]
        assert [p.reason for p in decoded.problems] == ["too_many_sensors"]
        assert lim.assets == 1


class TestTags:
    def test_new_tag_pairs_beyond_the_limit_refuse_the_reading(self) -> None:
        lim = limits(tags=2)
        assert lim.admit(one(reading("a", "x", line="1"))).problems == ()
        assert lim.admit(one(reading("a", "x", line="2"))).problems == ()  # a second pair: line=2
        err = refused(lim, one(reading("a", "x", line="3")))
        assert err.reason == "too_many_tags" and "mqtt.max_tags_per_asset=2" in err.detail
        for value in ("1", "2"):  # the pairs seen still pass
            assert lim.admit(one(reading("a", "x", line=value))).readings[0].tags == {"line": value}
        assert lim.admit(one(reading("b", "x", line="3"))).problems == ()  # the limit is per asset

    def test_no_tags_always_pass(self) -> None:
        lim = limits(tags=0)
        assert lim.admit(one(reading("a", "x"))).problems == ()
        assert refused(lim, one(reading("a", "x", line="1"))).reason == "too_many_tags"

    def test_a_long_tag_value_is_kept_as_a_hash_only(self) -> None:
        lim = limits(tags=1)
        value = "v" * 60_000
        lim.admit(one(reading("a", "x", line=value)))
        assert lim._assets["a"].tags == {hash(("line", value))}  # an int, not the 60 KB value
        assert lim.admit(one(reading("a", "x", line=value))).problems == ()


def test_state_never_grows_past_the_limits() -> None:
    lim = limits(assets=5, sensors=7, tags=3)
    for i in range(2_000):
        asset = f"a{i % 50}"
        try:
            lim.admit(one(reading(asset, *(f"s{i}-{j}" for j in range(10)), line=str(i))))
        except DecodeError as exc:
            assert exc.reason in LIMIT_REASONS
    assert lim.assets == 5
    assert all(len(entry.sensors) <= 7 and len(entry.tags) <= 3 for entry in lim._assets.values())


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        PublisherLimits(max_assets=0, max_sensors_per_asset=1, max_tags_per_asset=0)
    with pytest.raises(ValueError):
        PublisherLimits(max_assets=1, max_sensors_per_asset=0, max_tags_per_asset=0)


# --------------------------------------------------------------------------------------------------
# Behind the decoder
# --------------------------------------------------------------------------------------------------
def test_the_reasons_are_rejection_reasons() -> None:
    assert set(LIMIT_REASONS) <= set(REJECTION_REASONS)


def test_the_decoder_admits_through_its_limits() -> None:
    decoder = Decoder(TopicTemplate("plant/{line}/{asset}"), now_ns=now, limits=limits(assets=1, sensors=2, tags=1))
    frame = json.dumps({"values": {"x": 1.0, "y": 2.0, "z": 3.0}}).encode()
    decoded = decoder.decode("plant/l1/pump-1", frame)
    assert decoded.readings == (Reading("pump-1", NOW, {"x": 1.0, "y": 2.0}, {"line": "l1"}),)
    assert [p.reason for p in decoded.problems] == ["too_many_sensors"]
    with pytest.raises(DecodeError) as info:
        decoder.decode("plant/l1/pump-2", b'{"values": {"x": 1.0}}')
    assert info.value.reason == "too_many_assets"
    with pytest.raises(DecodeError) as info:
        decoder.decode("plant/l2/pump-1", b'{"values": {"x": 1.0}}')  # a second line of the one asset
    assert info.value.reason == "too_many_tags"


def test_a_reading_refused_for_another_reason_takes_no_slot() -> None:
    lim = limits(assets=1)
    decoder = Decoder("plantwatch/{asset}", now_ns=now, max_future_ns=10**9, limits=lim)
    with pytest.raises(DecodeError) as info:
        decoder.decode("plantwatch/glitch", json.dumps({"ts": NOW + 10**12, "values": {"x": 1.0}}).encode())
    assert info.value.reason == "future_timestamp"
    with pytest.raises(DecodeError):
        decoder.decode("plantwatch/bad", b'{"values": {"x": "text"}}')
    assert lim.assets == 0
    assert decoder.decode("plantwatch/good", b'{"values": {"x": 1.0}}').readings[0].asset == "good"


def test_payload_tags_count_against_the_asset_named_in_the_payload() -> None:
    decoder = Decoder("plantwatch/{asset}", now_ns=now, payload_tags=True, limits=limits(assets=2, tags=2))
    lines = "\n".join(f"m,asset=p{i},host=h{i} x=1 {NOW}" for i in range(3)).encode()
    decoded = decoder.decode("plantwatch/any", lines)
    assert [r.asset for r in decoded.readings] == ["p0", "p1"]
    assert [p.reason for p in decoded.problems] == ["too_many_assets"]
    with pytest.raises(DecodeError) as info:
        decoder.decode("plantwatch/any", f"m,asset=p0,host=h0,rack=r1,room=9 x=1 {NOW}".encode())
    assert info.value.reason == "too_many_tags"


def test_assets_with_a_saved_model_keep_their_places_after_a_restart(tmp_path: Path) -> None:
    models = ModelPersistence(str(tmp_path / "models"))
    saved = AssetMonitor("pump-7", MonitorConfig(baseline_rows=300), ("flow", "temp"))
    assert models.checkpoint({"pump-7": saved}, ["pump-7"], MaintenanceTracker(86_400, 3_600), scored_seq=1)
    settings = load_settings(
        None,
        storage__kind="sqlite",
        detector__model_dir=str(tmp_path / "models"),
        mqtt__max_assets=1,
        mqtt__max_sensors_per_asset=2,
    )
    lim = publisher_limits(settings)  # as a start builds it: the maintenance trends take no place
    assert lim.assets == 1 and lim.sensors_of("pump-7") == {"flow", "temp"}
    assert refused(lim, one(reading("made-up", "x"))).reason == "too_many_assets"  # arrived first, refused
    assert refused(lim, one(reading("pump-7", "speed"))).reason == "too_many_sensors"
    assert lim.admit(one(reading("pump-7", "flow"))).readings == (reading("pump-7", "flow"),)
