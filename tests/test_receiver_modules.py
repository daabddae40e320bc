"""The receiver child's memory: what its modules bring into it (``mqtt.receiver: process``)."""

from __future__ import annotations

import subprocess
import sys

# What the service needs and the child does not: the child relays its counts up the pipe
# (prometheus_client, ~3 MB resident), never scores (numpy, ~15 MB) and never says plantwatch's
# version (importlib.metadata).
NOT_IN_THE_CHILD = ("prometheus_client", "numpy", "pydantic", "sqlalchemy", "fastapi", "importlib.metadata")


def test_the_receiver_childs_modules_leave_out_what_only_the_service_needs() -> None:
    # The child's bootstrap imports plantwatch.service.receiver, whose imports bring MqttSource and Decoder.
    code = (
        "import sys, plantwatch.service.receiver; "
        f"print(' '.join(name for name in {NOT_IN_THE_CHILD!r} if name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == []
