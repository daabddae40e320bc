"""Hostile payloads for scenario 5 of bench/reliability.py, mixed among a dataset's good frames.

Payloads that plantwatch rejects whole go to the real assets' own topics (a device sending garbage);
the ones it partly admits go elsewhere, so that the good readings' verdicts stay comparable with an
undisturbed run: frames of 4,000 sensor names to ``plant/wide-N`` and made-up assets (one valid
frame each, beyond ``mqtt.max_assets``) to ``plant/fake-N``. The fakes start after the first 2 % of
the good frames, after the wide ones, so the real and the wide assets hold their slots first.
"""

from __future__ import annotations

import itertools
import json
import random

from reliability_data import Dataset

FAR_FUTURE_NS = 4_102_444_800 * 10**9  # 2100-01-01
OVERSIZED = 70_000  # between max_payload_bytes (65,536) and the broker's cut (+66,560): arrives, refused
HUGE = 2_000_000  # beyond the MQTT 5 Maximum Packet Size plantwatch announces: the broker drops it
HUGE_COUNT = 5  # a few: each crosses the broker in full


def _frame(ts_ns: int, values: str) -> bytes:
    return f'{{"ts":{ts_ns},"values":{values}}}'.encode()


def hostile_payloads(count: int, ts_ns: int) -> list[tuple[str, bytes]]:
    """``count`` payloads of six kinds, in turn: (kind, payload)."""
    kinds = {
        "oversized": lambda i: _frame(ts_ns, json.dumps({"s0": 1.0, "pad": "x" * OVERSIZED})),
        "nested": lambda i: b'{"ts":1,"values":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        "invalid_utf8": lambda i: b'{"ts":1,"values":{"s0":\xff\xfe\xfd}}',
        "nan": lambda i: _frame(ts_ns, '{"s0":NaN,"s1":Infinity}'),
        "far_future": lambda i: _frame(FAR_FUTURE_NS + i * 10**9, '{"s0":1.0}'),
        "quote_name": lambda i: _frame(ts_ns, '{"q\\"uote":2.0}'),
    }
    cycle = itertools.cycle(kinds.items())
    return [(kind, make(i)) for i, (kind, make) in zip(range(count), cycle, strict=False)]


def wide_frame(ts_ns: int, sensors: int = 4000) -> bytes:
    return _frame(ts_ns, json.dumps({f"w{j}": float(j) for j in range(sensors)}, separators=(",", ":")))


def mixed_frames(dataset: Dataset, hostile: int, fakes: int, wide: int) -> list[tuple[str, bytes]]:
    """The dataset's frames with ``wide`` 4,000-sensor frames on ten ``plant/wide-N`` after its first 2 %,
    then ``hostile`` payloads (and five of 2 MB) on its assets' topics and ``fakes`` made-up assets
    spread among the rest."""
    ts_ns = dataset.start_s * 10**9
    extra: list[tuple[str, bytes]] = []
    for n, (_, payload) in enumerate(hostile_payloads(hostile, ts_ns)):
        extra.append((f"plant/{dataset.assets[n % len(dataset.assets)]}", payload))
    extra += [(f"plant/{dataset.assets[0]}", b"[" + b"1," * (HUGE // 2) + b"1]") for _ in range(HUGE_COUNT)]
    extra += [(f"plant/fake-{n}", _frame(ts_ns, '{"s0":1.0}')) for n in range(fakes)]
    random.Random(0).shuffle(extra)  # the kinds mixed, the same way every run
    good = dataset.frames
    head = len(good) // 50
    # The wide frames first after the head: made-up assets would otherwise take their assets' slots.
    mixed = list(good[:head]) + [(f"plant/wide-{n % 10}", wide_frame(ts_ns + n * 10**9)) for n in range(wide)]
    rest, parts = good[head:], max(len(extra), 1)
    for k, item in enumerate(extra):
        mixed += rest[k * len(rest) // parts : (k + 1) * len(rest) // parts]
        mixed.append(item)
    return mixed if extra else mixed + rest
