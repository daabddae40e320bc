"""Connect a paho client and wait for the broker's answer: what a publisher and a reachability check share.

paho's ``connect`` only opens the socket (and the TLS session); whether the broker took the
session is in the CONNACK, which arrives on the network loop. A port that is no broker's, or a
broker that refuses the login, must be said at once rather than left to a silent background retry.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import paho.mqtt.client as mqtt


class NoSession(ConnectionError):
    """The socket opened, but the broker did not take the session: no CONNACK in time, or a refusal.

    Its own class, so callers tell it from the ``ConnectionError`` subclasses ``connect`` itself
    raises (a refused or reset TCP connection), which mean the socket never became a session.
    """


def connect_and_await_connack(client: mqtt.Client, host: str, port: int, *, keepalive: int, timeout_s: float) -> None:
    """Connect ``client``, start its network loop and wait for the CONNACK.

    Raises what ``connect`` raises (an ``OSError``: a refused or unresolvable address, a TLS failure)
    before the loop starts; :class:`NoSession` with one line when no CONNACK comes within
    ``timeout_s`` or the broker refuses. After a ``NoSession`` the loop runs: the caller
    disconnects and stops it. ``client.on_connect`` is replaced.
    """
    answered = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        answered.set()

    client.on_connect = on_connect
    client.connect(host, port, keepalive=keepalive)
    client.loop_start()
    if not answered.wait(timeout_s):
        raise NoSession(f"connected, but no MQTT CONNACK within {timeout_s:g} s (is it an MQTT broker?)")
    if refused:
        raise NoSession(f"the broker refused the connection: {refused[0]}")


def stop_network_loop(client: mqtt.Client) -> None:
    """Disconnect ``client`` and stop its network loop, also after a Ctrl-C that came inside ``loop_start``.

    ``loop_start`` records its thread before starting it; interrupted in between, paho's
    ``loop_stop`` would raise ``RuntimeError`` (cannot join a thread that never started) over the
    ``KeyboardInterrupt`` the command is about to report as one line.
    """
    client.disconnect()
    with contextlib.suppress(RuntimeError):  # the thread never started: nothing runs that needs stopping
        client.loop_stop()
