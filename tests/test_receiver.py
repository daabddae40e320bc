"""``mqtt.receiver: process``: paho and the decoding in a child process, on real Mosquitto and
VictoriaMetrics; every reading stored, acknowledged only after the write, and none lost when the
child dies mid-stream."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import MosquittoServer, VictoriaServer
from test_delivery import _publish, _service, _wait_connected
from waiting import wait_until

from ingest.replay import Publisher
from plantwatch.service.receiver import ReceiverProcess
from plantwatch.service.wiring import Service

pytestmark = pytest.mark.integration


def _receiver(service: Service) -> ReceiverProcess:
    source = service.pipeline.source
    assert isinstance(source, ReceiverProcess)
    return source


def _child(receiver: ReceiverProcess) -> subprocess.Popen[bytes]:
    assert receiver._process is not None
    return receiver._process


@contextlib.contextmanager
def _running(tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer, client_id: str) -> Iterator[Service]:
    """The service with ``mqtt.receiver: process``, started and connected; stopped at the end."""
    service = _service(tmp_path, mosquitto.port, victoria.url, client_id, mqtt__receiver="process")
    service.pipeline.start()
    try:
        _wait_connected(service)
        yield service
    finally:
        service.pipeline.stop()


def _python_children() -> list[int]:
    """Processes this one started that run this interpreter (the test servers run their own binaries)."""
    pids = [
        int(p) for task in Path(f"/proc/{os.getpid()}/task").iterdir() for p in (task / "children").read_text().split()
    ]
    python = Path(sys.executable).resolve()
    return [pid for pid in pids if Path(f"/proc/{pid}/exe").resolve() == python]


def _stored(victoria: VictoriaServer, asset: str) -> int:
    return victoria.distinct_timestamps(f'{{__name__="readings_a",asset="{asset}"}}')


def test_a_receiver_process_stores_scores_and_acknowledges_every_reading(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer
) -> None:
    with _running(tmp_path, mosquitto, victoria, "pw-receiver") as service:
        receiver = _receiver(service)
        assert _child(receiver).pid != os.getpid()  # the MQTT client is in another process
        # ... and the only other interpreter: no resource tracker (multiprocessing's spawn started one).
        assert _python_children() == [_child(receiver).pid]
        _publish(mosquitto.port, "site/rx-pump", 300, start_s=1_610_000_000)
        counters = service.counters
        wait_until(lambda: _stored(victoria, "rx-pump") == 300, 30, "300 readings stored")
        wait_until(lambda: receiver.unacknowledged == 0, 10, "every delivery acknowledged")
        # The child's counters reach this process's /metrics.
        wait_until(lambda: counters.get("plantwatch_messages_received_total") >= 300, 10, "received relayed")
        wait_until(lambda: counters.get("plantwatch_rows_scored_total") > 0, 30, "rows scored after the baseline")
    assert _child(receiver).poll() is not None  # the child has exited
    # Acknowledged at the broker: the same session resumed gets nothing again.
    with _running(tmp_path, mosquitto, victoria, "pw-receiver") as again:
        _publish(mosquitto.port, "site/rx-pump", 1, start_s=1_610_000_300)
        wait_until(lambda: again.counters.get("plantwatch_readings_written_total") >= 1, 20, "the new reading")
        assert again.counters.get("plantwatch_readings_written_total") == 1


def test_a_receiver_killed_mid_stream_is_replaced_and_no_reading_is_lost(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer
) -> None:
    with _running(tmp_path, mosquitto, victoria, "pw-receiver-kill") as service:
        receiver = _receiver(service)
        first = _child(receiver)
        _publish(mosquitto.port, "site/rx-kill", 2000, start_s=1_620_000_000)
        wait_until(lambda: service.counters.get("plantwatch_readings_written_total") > 0, 30, "the first writes")
        os.kill(first.pid, signal.SIGKILL)
        wait_until(lambda: receiver._process is not first and receiver.connected.is_set(), 30, "a new receiver")
        # What the dead child held unacknowledged comes back from the broker to the new one.
        wait_until(lambda: _stored(victoria, "rx-kill") == 2000, 60, "all 2000 readings stored")
        wait_until(lambda: receiver.unacknowledged == 0, 10, "every delivery of the new child acknowledged")
        assert service.pipeline.health_report()["mqtt_connected"] is True


def test_the_childs_log_lines_and_counters_reach_this_process_before_the_deliveries_after_them(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ingest.mqtt_source")
    with _running(tmp_path, mosquitto, victoria, "pw-receiver-log") as service:
        receiver = _receiver(service)
        publisher = Publisher("127.0.0.1", mosquitto.port, client_id="pub-receiver-log")
        try:
            publisher.publish("site/rx-log", b"not json at all")
            publisher.publish("site/rx-log", b'{"ts": 1630000000, "values": {"a": 1.0}}')
            publisher.flush()
        finally:
            publisher.close()
        counters = service.counters
        wait_until(lambda: counters.get("plantwatch_readings_written_total") >= 1, 30, "the good reading stored")
        # The reject was counted and logged in the child; both went up the pipe ahead of the delivery
        # that followed it, so they are here by the time that one is stored.
        assert counters.total("plantwatch_messages_rejected_total") == 1
        assert counters.get("plantwatch_messages_received_total") == 2
        rejected = [r for r in caplog.records if r.name == "ingest.mqtt_source" and "rejected input" in r.getMessage()]
        assert len(rejected) == 1 and rejected[0].levelno == logging.WARNING
        assert "site/rx-log" in rejected[0].getMessage()
        assert rejected[0].process == _child(receiver).pid  # logged there, handled by this process's loggers


def test_signals_to_the_process_group_leave_the_child_to_the_service(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaServer
) -> None:
    """Ctrl-C, or a service manager, signals every process of the group: the child must not die of it
    (the service, stopping, would take that for a crash and start another)."""
    with _running(tmp_path, mosquitto, victoria, "pw-receiver-signals") as service:
        receiver = _receiver(service)
        child = _child(receiver)
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(child.pid, sig)
        _publish(mosquitto.port, "site/rx-signals", 5, start_s=1_640_000_000)
        wait_until(lambda: _stored(victoria, "rx-signals") == 5, 30, "the readings sent after the signals")
        assert _child(receiver) is child and child.poll() is None
    assert child.poll() is not None  # stopped by the service
