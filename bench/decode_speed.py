"""Decode throughput per payload format: what one paho network thread can turn into readings.

python bench/decode_speed.py
python bench/decode_speed.py --against OLD/ingest/decode.py   # A/B against another version of the decoder
python bench/decode_speed.py --limits   # A/B: without and with the publisher limits (mqtt.max_assets, ...)

Each case decodes the same payloads again and again through ``Decoder.decode`` (the call the MQTT
callback makes) and prints the best of several runs: messages/s, readings/s (a reading is one asset's
values at one instant) and values/s. Time is this process's CPU time, so other work on the machine
does not count against the decoder. ``--against`` loads another ``decode.py`` (e.g. from
``git archive <commit>`` unpacked elsewhere; it must import from this tree) and alternates the two in
one process, so both see the same machine load; ``--limits`` alternates the same way between this
decoder without and with :class:`~ingest.limits.PublisherLimits` at the service's defaults (the asset
and its sensors admitted by the first message, as in steady running). The live ceiling is paho's
receive rate (~5,600 msg/s per subscriber in the service); the decoder must stay far above it.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

from ingest.decode import Decoder
from ingest.limits import PublisherLimits
from ingest.messages import Decoded

MESSAGES = 20_000
REPEAT = 7
TS_NS = 1_714_564_800_123_456_789
MAX_FUTURE_NS = 300 * 10**9  # as the service runs it (mqtt.max_future_s)
SENSORS = [f"sensor_{i}" for i in range(8)]


def _frame(ts: str) -> bytes:
    values = ",".join(f'"{name}":{20.5 + i * 0.25}' for i, name in enumerate(SENSORS))
    return f'{{"ts":{ts},"values":{{{values}}}}}'.encode()


def _line(ts_ns: int) -> str:
    fields = ",".join(f"{name}={20.5 + i * 0.25}" for i, name in enumerate(SENSORS))
    return f"pump,site=north {fields} {ts_ns}"


# (name, topic template, topic, payload)
CASES: list[tuple[str, str, str, bytes]] = [
    ("JSON frame, 8 sensors, epoch ns", "plantwatch/{asset}", "plantwatch/pump-1", _frame(str(TS_NS))),
    ("JSON frame, 8 sensors, ISO ts", "plantwatch/{asset}", "plantwatch/pump-1", _frame('"2024-05-01T12:00:00.5Z"')),
    (
        "JSON single value, epoch s",
        "plant/{line}/{asset}/{sensor}",
        "plant/l1/pump-1/temp",
        b'{"ts":1714564800.25,"value":21.5}',
    ),
    ("bare number", "plant/{line}/{asset}/{sensor}", "plant/l1/pump-1/temp", b"21.5"),
    ("line protocol, 1 line x 8 fields", "plantwatch/{asset}", "plantwatch/pump-1", _line(TS_NS).encode()),
    (
        "line protocol, 10 lines x 8 fields",
        "plantwatch/{asset}",
        "plantwatch/pump-1",
        "\n".join(_line(TS_NS + i) for i in range(10)).encode(),
    ),
    (
        "line protocol, escaped key",
        "plantwatch/{asset}",
        "plantwatch/pump-1",
        _line(TS_NS).replace("sensor_0", "sensor\\ 0").encode(),
    ),
]


DecodeFn = Callable[[str, bytes], object]


def measure(make: Callable[[str], DecodeFn], topic: str, template: str, payload: bytes, repeat: int) -> float:
    """Best CPU seconds for MESSAGES decodes of ``payload``."""
    decode = make(template)
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(MESSAGES):
            decode(topic, payload)
        best = min(best, time.process_time() - started)
    return best


def _decoder_of(cls: type) -> Callable[[str], DecodeFn]:
    return lambda template: cls(template, now_ns=lambda: TS_NS, max_future_ns=MAX_FUTURE_NS).decode


def _limited_decoder(template: str) -> DecodeFn:
    from plantwatch.settings import MqttSettings  # the service's defaults

    m = MqttSettings()
    limits = PublisherLimits(
        max_assets=m.max_assets, max_sensors_per_asset=m.max_sensors_per_asset, max_tags_per_asset=m.max_tags_per_asset
    )
    return Decoder(template, now_ns=lambda: TS_NS, max_future_ns=MAX_FUTURE_NS, limits=limits).decode


def _load_decoder(path: Path) -> type:
    spec = importlib.util.spec_from_file_location("decode_under_comparison", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    decoder: type = module.Decoder
    return decoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--against", type=Path, help="another decode.py to compare with, alternating runs")
    group.add_argument("--limits", action="store_true", help="compare without and with the publisher limits")
    args = parser.parse_args()
    this = _decoder_of(Decoder)
    if args.limits:
        _compare(("limits off", this), ("limits on", _limited_decoder))
        return
    if args.against is None:
        print(f"{'format':<36}{'messages/s':>12}{'readings/s':>12}{'values/s':>12}")
        for name, template, topic, payload in CASES:
            first = this(template)(topic, payload)
            assert isinstance(first, Decoded)
            values = sum(len(r.values) for r in first.readings)
            rate = MESSAGES / measure(this, topic, template, payload, REPEAT)
            print(f"{name:<36}{rate:>12,.0f}{rate * len(first.readings):>12,.0f}{rate * values:>12,.0f}")
        return
    _compare(("against", _decoder_of(_load_decoder(args.against))), ("this tree", this))


def _compare(*both: tuple[str, Callable[[str], DecodeFn]]) -> None:
    """Messages/s of two decoders, alternating runs, and the second's change."""
    (old_name, old_make), (new_name, new_make) = both
    print(f"{'format (messages/s)':<36}{old_name:>12}{new_name:>12}{'change':>9}{'µs/msg':>9}")
    for name, template, topic, payload in CASES:
        best = {old_name: float("inf"), new_name: float("inf")}
        for _ in range(REPEAT):  # alternate, so a busy spell hits both
            best[old_name] = min(best[old_name], measure(old_make, topic, template, payload, 1))
            best[new_name] = min(best[new_name], measure(new_make, topic, template, payload, 1))
        old, new = MESSAGES / best[old_name], MESSAGES / best[new_name]
        extra_us = (best[new_name] - best[old_name]) / MESSAGES * 1e6
        print(f"{name:<36}{old:>12,.0f}{new:>12,.0f}{new / old - 1:>+9.1%}{extra_us:>+9.2f}")


if __name__ == "__main__":
    main()
