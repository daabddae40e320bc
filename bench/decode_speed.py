"""Decode throughput per payload format: what one paho network thread can turn into readings.

python bench/decode_speed.py

Each case decodes the same payloads again and again through ``Decoder.decode`` (the call the MQTT
callback makes) and prints the best of several runs: messages/s, readings/s (a reading is one asset's
values at one instant) and values/s. Time is this process's CPU time, so other work on the machine
does not count against the decoder. The live ceiling is paho's receive rate (~5,600 msg/s per
subscriber in the service); the decoder must stay far above it.
"""

from __future__ import annotations

import time

from ingest.decode import Decoder

MESSAGES = 20_000
REPEAT = 7
TS_NS = 1_714_564_800_123_456_789
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


def measure(template: str, topic: str, payload: bytes) -> tuple[float, int, int]:
    """Best seconds for MESSAGES decodes, and the readings and values one message yields."""
    decoder = Decoder(template, now_ns=lambda: TS_NS)
    decode = decoder.decode
    first = decode(topic, payload)
    readings = len(first.readings)
    values = sum(len(r.values) for r in first.readings)
    best = float("inf")
    for _ in range(REPEAT):
        started = time.process_time()
        for _ in range(MESSAGES):
            decode(topic, payload)
        best = min(best, time.process_time() - started)
    return best, readings, values


def main() -> None:
    print(f"{'format':<36}{'messages/s':>12}{'readings/s':>12}{'values/s':>12}")
    for name, template, topic, payload in CASES:
        seconds, readings, values = measure(template, topic, payload)
        rate = MESSAGES / seconds
        print(f"{name:<36}{rate:>12,.0f}{rate * readings:>12,.0f}{rate * values:>12,.0f}")


if __name__ == "__main__":
    main()
