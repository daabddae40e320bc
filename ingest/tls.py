"""The files a TLS connection is made with, for the broker (mqtts://) and for InfluxDB (https://)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TlsFiles:
    """The CA that signed the server's certificate (None: the system's CAs), and a client certificate
    with its key for a server that asks for one (None: none; the key may be inside ``cert_file``)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


NO_TLS_FILES = TlsFiles()  # the system's CAs, no client certificate
