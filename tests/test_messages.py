"""The messages the receiver child sends up its pipe survive the trip whole."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

from ingest.messages import Inbound, Reading


def test_deliveries_pickle_as_their_fields() -> None:
    chunk = [
        Inbound(
            (Reading("pump-1", 1_700_000_000_000_000_000, {"flow": 1.5, "temp": float("inf")}, {"line": "L2"}),), 7
        ),
        Inbound((Reading("fan", 5, {}), Reading("fan", 6, {"rpm": -0.0})), None, qos=0, received_ns=123),
    ]
    back = pickle.loads(ForkingPickler.dumps(chunk))  # what multiprocessing.connection sends
    assert back == chunk
    assert [type(item) for item in back] == [Inbound, Inbound]
    assert back[1].readings[1].values == {"rpm": -0.0} and back[1].readings[0].tags == {}
    assert back[0].readings[0].tags == {"line": "L2"} and back[0].mid == 7 and back[1].received_ns == 123
