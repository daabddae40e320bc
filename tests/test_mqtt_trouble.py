"""How connection trouble is explained and how often it is logged (the real-broker cases are in
test_mqtt_connect_errors.py)."""

from __future__ import annotations

import errno
import logging
import socket
import ssl

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ingest.mqtt_trouble import (
    CONNECT_FAILURES,
    TroubleLog,
    loss_trouble,
    refusal_trouble,
    socket_trouble,
)
from telemetry.counters import Counters

URL = "mqtt://broker.example:1883"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def test_each_cause_is_logged_once_then_at_most_every_repeat_s(caplog: pytest.LogCaptureFixture) -> None:
    clock, counters = Clock(), Counters()
    trouble = TroubleLog(URL, counters, repeat_s=60, backoff="1-60 s", clock=clock)
    refused = socket_trouble(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), tls=False)
    for second in (0, 1, 3, 7, 15, 31):
        clock.now = second
        trouble.failed(refused)
    assert len(_errors(caplog)) == 1
    clock.now = 61
    trouble.failed(refused)
    errors = _errors(caplog)
    assert len(errors) == 2 and "(5 more time(s) since it was last logged)" in errors[1]
    assert URL in errors[1] and "mqtt.url" in errors[1]  # a repeat is as complete as the first
    # Another cause is news: logged at once.
    trouble.failed(socket_trouble(socket.gaierror(-2, "Name or service not known"), tls=False))
    assert len(_errors(caplog)) == 3 and "does not resolve" in _errors(caplog)[2]
    assert counters.get(CONNECT_FAILURES, cause="refused") == 7
    assert counters.get(CONNECT_FAILURES, cause="unresolved") == 1
    assert trouble.connected() == 8 and trouble.connected() == 0


def test_a_flapping_connection_does_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    trouble = TroubleLog(URL, Counters(), repeat_s=60, backoff="1-60 s", clock=clock)
    lost = loss_trouble(ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"), "plantwatch")
    for second in range(50):  # lost and regained every second, as two instances sharing a client id do
        clock.now = second
        trouble.lost(lost)
        assert trouble.connected() == 0  # a loss is not a failed attempt
    assert len(_errors(caplog)) == 1


@pytest.mark.parametrize(
    ("exc", "tls", "cause", "advice"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), False, "refused", "broker is running"),
        (socket.gaierror(-2, "Name or service not known"), False, "unresolved", "DNS"),
        (TimeoutError("timed out"), False, "timeout", "firewalls"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), True, "tls_handshake", "use mqtt://"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), False, "reset", "needs mqtts://"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), True, "tls_handshake", "8883"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), True, "tls_certificate", "trust store"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), False, "network", "network path"),
        (None, False, "network", "network path"),
    ],
)
def test_socket_errors_name_what_to_check(exc: BaseException | None, tls: bool, cause: str, advice: str) -> None:
    trouble = socket_trouble(exc, tls=tls)
    assert trouble.cause == cause and advice in trouble.advice
    assert "\n" not in trouble.detail


@pytest.mark.parametrize(
    ("name", "cause", "advice"),
    [
        ("Not authorized", "not_authorized", "PLANTWATCH_MQTT__PASSWORD"),
        ("Bad user name or password", "bad_credentials", "mqtt.username"),
        ("Client identifier not valid", "client_id_rejected", "mqtt.client_id"),
        ("Unsupported protocol version", "protocol", 'mqtt.protocol: "3.1.1"'),
        ("Server busy", "unavailable", "broker's log"),
        ("Implementation specific error", "refused_by_broker", "broker's log"),
    ],
)
def test_refusals_name_what_to_check(name: str, cause: str, advice: str) -> None:
    trouble = refusal_trouble(ReasonCode(PacketTypes.CONNACK, name))
    assert (trouble.cause, name in trouble.detail) == (cause, True) and advice in trouble.advice


def test_a_taken_over_session_names_the_client_id() -> None:
    trouble = loss_trouble(ReasonCode(PacketTypes.DISCONNECT, "Session taken over"), "plantwatch-line1")
    assert trouble.cause == "session_taken_over" and "'plantwatch-line1'" in trouble.advice
