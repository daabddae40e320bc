"""Decode throughput per payload format: what one paho network thread can turn into readings.

python bench/decode_speed.py
python bench/decode_speed.py --against OLD/ingest/decode.py   # A/B against another version of the decoder

Each case decodes the same payloads again and again through ``Decoder.decode`` (the call the MQTT
callback makes) and prints the best of several runs: messages/s, readings/s (a reading is one asset's
values at one instant) and values/s. Time is this process's CPU time, so other work on the machine
does not count against the decoder. ``--against`` loads another ``decode.py`` (e.g. from
``git archive <commit>`` unpacked elsewhere; it must import from this tree) and alternates the two in
one process, so both see the same machine load. The live ceiling is paho's receive rate (~5,600 msg/s per
subscriber in the service); the decoder must stay far above it.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

from ingest.decode import Decoder
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


def _load_decoder(path: Path) -> type:
    spec = importlib.util.spec_from_file_location("decode_under_comparison", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    decoder: type = module.Decoder
    return decoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another decode.py to compare with, alternating runs")
    args = parser.parse_args()
    this = _decoder_of(Decoder)
    if args.against is None:
        print(f"{'format':<36}{'messages/s':>12}{'readings/s':>12}{'values/s':>12}")
        for name, template, topic, payload in CASES:
            first = this(template)(topic, payload)
            assert isinstance(first, Decoded)
            values = sum(len(r.values) for r in first.readings)
            rate = MESSAGES / measure(this, topic, template, payload, REPEAT)
            print(f"{name:<36}{rate:>12,.0f}{rate * len(first.readings):>12,.0f}{rate * values:>12,.0f}")
        return
    other = _decoder_of(_load_decoder(args.against))
    print(f"{'format (messages/s)':<36}{'against':>12}{'this tree':>12}{'change':>9}")
    for name, template, topic, payload in CASES:
        best = {"against": float("inf"), "this": float("inf")}
        for _ in range(REPEAT):  # alternate, so a busy spell hits both
            best["against"] = min(best["against"], measure(other, topic, template, payload, 1))
            best["this"] = min(best["this"], measure(this, topic, template, payload, 1))
        old, new = MESSAGES / best["against"], MESSAGES / best["this"]
        print(f"{name:<36}{old:>12,.0f}{new:>12,.0f}{new / old - 1:>+9.1%}")


if __name__ == "__main__":
    main()
