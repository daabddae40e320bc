"""Telling a broker's redelivery of a message plantwatch already has from a new message.

After a reconnect the broker resends, with the DUP flag and under the same packet identifier, every
QoS 1 delivery of the session it holds unacknowledged (MQTT 3.1.1 §4.4, MQTT 5 §4.4). That is more
than plantwatch holds: acknowledgements still on their way when the connection dropped (queued in
paho, in a socket buffer, or sent to a broker that stopped) are lost, and MQTT never confirms a
PUBACK. Written again, each would be a duplicate point (VictoriaMetrics keeps both samples; InfluxDB
overwrites). So the source remembers the deliveries it handed on lately, by packet id and content,
and answers a redelivery of one itself:

- already acknowledged here: acknowledge it again at once (the first PUBACK never arrived);
- still being written: drop it; the original's acknowledgement carries the same packet id and so
  answers the redelivery too.

Only a delivery with the DUP flag, the same packet id, topic and payload counts as a redelivery, so
a publisher that sends the same payload twice still has both written.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict


class Seen(enum.Enum):
    PENDING = "pending"  # handed on to the writer, not yet acknowledged
    ACKED = "acked"


class RecentDeliveries:
    """The last ``capacity`` deliveries handed on, by packet id: their content's fingerprint and state.

    Thread-safe: paho's thread records and looks up, the writer's marks acknowledgements. The oldest
    entries are forgotten first; ``capacity`` should exceed what a reconnect can redeliver of what we
    saw (``max_in_flight`` held, plus acknowledgements in transit), hence a few times ``max_in_flight``.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._by_mid: OrderedDict[int, tuple[int, Seen]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def fingerprint(topic: str, payload: bytes) -> int:
        return hash((topic, payload))

    def handed_on(self, mid: int, fingerprint: int) -> None:
        with self._lock:
            self._by_mid.pop(mid, None)  # a packet id the broker reuses is a new delivery
            self._by_mid[mid] = (fingerprint, Seen.PENDING)
            if len(self._by_mid) > self.capacity:
                self._by_mid.popitem(last=False)

    def acknowledged(self, mid: int) -> None:
        with self._lock:
            entry = self._by_mid.get(mid)
            if entry is not None:
                self._by_mid[mid] = (entry[0], Seen.ACKED)

    def redelivered(self, mid: int, fingerprint: int) -> Seen | None:
        """What became of the delivery a DUP-flagged one repeats (None: not one of ours, a new one)."""
        with self._lock:
            entry = self._by_mid.get(mid)
        if entry is None or entry[0] != fingerprint:
            return None
        return entry[1]
