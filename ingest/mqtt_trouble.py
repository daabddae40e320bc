"""Why the broker connection fails, in words a newcomer can act on, logged without flooding the log.

paho reports trouble in three places, each turned into a :class:`Trouble` here:

- ``on_connect_fail``: the socket or TLS handshake failed (nothing listens, no DNS, a plain listener
  behind ``mqtts://``, an untrusted certificate), see :func:`socket_trouble`;
- ``on_connect`` with a failing reason code: the broker answered and refused (a wrong password, a
  client id it rejects, an MQTT version it does not speak), see :func:`refusal_trouble`;
- ``on_disconnect`` after a connection: it was lost (another client took the session over, the
  broker went away), see :func:`loss_trouble`; and before one, without a refusal: the server closed
  the connection instead of answering CONNECT (not an MQTT port, a TLS listener behind ``mqtt://``),
  see :func:`unanswered_trouble`.

:class:`TroubleLog` logs each cause in full the first time it appears, then at most
once per ``repeat_s`` (with the count of the repeats it did not log), and counts every failed
attempt by cause.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:  # a type only: the receiver child runs without prometheus_client (~3 MB)
    from telemetry.counters import Counters


log = logging.getLogger("ingest.mqtt_source")  # the connection's logger: its trouble is logged where it is

CONNECT_FAILURES = "plantwatch_mqtt_connect_failures_total"

_CREDENTIALS = (
    "check mqtt.username and the password (PLANTWATCH_MQTT__PASSWORD or PLANTWATCH_MQTT__PASSWORD_FILE) "
    "against the broker's password file and ACL"
)
_TLS_LISTENER = (
    "mqtts:// needs a TLS listener on that port (usually 8883); for a plain listener (usually 1883) "
    "use mqtt:// in mqtt.url"
)
_BROKER_LOG = "check the broker's log"


@dataclass(frozen=True)
class Trouble:
    cause: str  # stable label: the counter's `cause` and the unit of "log once"
    detail: str  # what happened
    advice: str  # what to check


def socket_trouble(exc: BaseException | None, *, tls: bool) -> Trouble:
    """The socket-level failure behind ``on_connect_fail`` (None when paho gave no exception)."""
    detail = _describe(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Trouble(
            "tls_certificate",
            f"the broker's certificate is not trusted ({detail})",
            "check that the certificate is issued for the host in mqtt.url and that its CA is in this "
            "machine's trust store",
        )
    if isinstance(exc, ssl.SSLError) or (tls and isinstance(exc, ConnectionResetError | ConnectionAbortedError)):
        # A plain listener answers a TLS ClientHello by closing the connection: no SSL error, a reset.
        return Trouble("tls_handshake", f"the TLS handshake failed ({detail})", _TLS_LISTENER)
    if isinstance(exc, ConnectionRefusedError):
        return Trouble(
            "refused",
            f"connection refused ({detail})",
            "check that the broker is running and that mqtt.url names its host and port",
        )
    if isinstance(exc, socket.gaierror):
        return Trouble(
            "unresolved", f"the host name does not resolve ({detail})", "check the host in mqtt.url and the DNS"
        )
    if isinstance(exc, TimeoutError):
        return Trouble(
            "timeout",
            f"no answer ({detail})",
            "check the host and port in mqtt.url and the firewalls between this machine and the broker",
        )
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError):
        return Trouble(
            "reset",
            f"the broker closed the connection ({detail})",
            f"{_BROKER_LOG}; a TLS-only listener needs mqtts:// in mqtt.url",
        )
    return Trouble("network", f"the connection failed ({detail})", "check the network path to the broker")


# CONNACK reason names (MQTT 5; paho maps MQTT 3.1.1 return codes onto the same names) -> (cause, advice)
_REFUSALS: dict[str, tuple[str, str]] = {
    "Not authorized": ("not_authorized", _CREDENTIALS),
    "Bad user name or password": ("bad_credentials", _CREDENTIALS),
    "Bad authentication method": ("bad_credentials", _CREDENTIALS),
    "Banned": ("banned", f"the broker bans this client; {_BROKER_LOG}"),
    "Client identifier not valid": (
        "client_id_rejected",
        "the broker rejects mqtt.client_id: choose another (letters and digits are safest)",
    ),
    "Unsupported protocol version": ("protocol", 'the broker does not speak MQTT 5: set mqtt.protocol: "3.1.1"'),
    "Server unavailable": ("unavailable", f"the broker cannot take connections now; {_BROKER_LOG}"),
    "Server busy": ("unavailable", f"the broker cannot take connections now; {_BROKER_LOG}"),
    "Quota exceeded": ("unavailable", f"the broker cannot take connections now; {_BROKER_LOG}"),
    "Connection rate exceeded": ("unavailable", f"the broker cannot take connections now; {_BROKER_LOG}"),
    "Use another server": ("moved", "the broker redirects its clients: point mqtt.url at the server it names"),
    "Server moved": ("moved", "the broker redirects its clients: point mqtt.url at the server it names"),
}


def refusal_trouble(reason: ReasonCode) -> Trouble:
    """The broker answered CONNECT with a failing reason code."""
    name = reason.getName()
    cause, advice = _REFUSALS.get(name, ("refused_by_broker", _BROKER_LOG))
    return Trouble(cause, f"the broker refused the connection: {name}", advice)


def loss_trouble(reason: ReasonCode, client_id: str) -> Trouble:
    """An established connection ended without our asking."""
    name = reason.getName()
    if name == "Session taken over":
        return Trouble(
            "session_taken_over",
            "another client connected with the same client id and took the session over",
            f"give every plantwatch instance (and no other client) its own mqtt.client_id, not {client_id!r}",
        )
    if name == "Keep alive timeout":
        return Trouble("keepalive", "the broker stopped answering", "check the network path and the broker's load")
    # Mosquitto 2.0 closes the socket of a taken-over session without saying why: point at it anyway.
    return Trouble(
        "lost",
        f"the connection was lost ({name})",
        f"{_BROKER_LOG}; if it says the client is already connected, another client uses mqtt.client_id "
        f"{client_id!r}: give each its own",
    )


def unanswered_trouble(reason: ReasonCode, *, tls: bool) -> Trouble:
    """The connection ended after TCP (and TLS) but before any CONNACK: the server never answered CONNECT."""
    advice = "check that mqtt.url names the broker's MQTT port"
    if not tls:
        advice += "; a TLS listener (usually 8883) needs mqtts:// in mqtt.url"
    else:  # TLS 1.3 checks a client certificate after the handshake: a refusal looks like this
        advice += (
            ", and, if the broker requires a client certificate (require_certificate), that mqtt.cert_file "
            "and mqtt.key_file name one its CA signed"
        )
    return Trouble(
        "no_connack", f"the server closed the connection before answering the MQTT CONNECT ({reason.getName()})", advice
    )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no detail from paho"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line: some socket errors carry newlines


class TroubleLog:
    """Logs connection trouble in full, once per cause and then at most once per ``repeat_s``.

    A repeat says how often the cause recurred since it was last logged, so a broker that stays away
    for a day costs a line per ``repeat_s`` (the reconnect backoff's ceiling), not one per attempt.
    """

    def __init__(
        self,
        url: str,
        counters: Counters,
        *,
        repeat_s: float,
        backoff: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.counters = counters
        self.repeat_s = repeat_s
        self.backoff = backoff  # e.g. "1-60 s", for the "retrying" note
        self.clock = clock
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}  # occurrences of each cause since it was last logged
        self._failed_attempts = 0  # since the last successful connection

    def failed(self, trouble: Trouble) -> None:
        """A connection attempt failed: count it by cause and log it (rate-limited)."""
        self.counters.inc(CONNECT_FAILURES, cause=trouble.cause)
        self._failed_attempts += 1
        self._note(trouble, "cannot connect to")

    def lost(self, trouble: Trouble) -> None:
        """An established connection ended without our asking (logged, rate-limited)."""
        self._note(trouble, "lost the connection to")

    def connected(self) -> int:
        """The connection is up; returns how many attempts had failed since the last one."""
        failed, self._failed_attempts = self._failed_attempts, 0
        return failed

    def _note(self, trouble: Trouble, what: str) -> None:
        now = self.clock()
        cause = trouble.cause
        logged_at = self._logged_at.get(cause)
        if logged_at is not None and now - logged_at < self.repeat_s:
            self._unlogged[cause] = self._unlogged.get(cause, 0) + 1
            return
        unlogged = self._unlogged.pop(cause, 0)
        again = "" if logged_at is None or not unlogged else f" ({unlogged} more time(s) since it was last logged)"
        self._logged_at[cause] = now
        log.error(
            "MQTT %s %s: %s%s; %s. Retrying with backoff (%s); /healthz answers 503 until connected",
            what,
            self.url,
            trouble.detail,
            again,
            trouble.advice,
            self.backoff,
        )
