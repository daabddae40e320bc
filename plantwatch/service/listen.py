"""The API's listening sockets, bound before anything else starts.

``plantwatch run`` binds ``api.host``/``api.port`` itself and hands the sockets to uvicorn
(``Server.run(sockets=...)``), so a port in use or a host name that does not resolve is one line
naming the key, before the broker, the database or the alert store is touched, and before the
pipeline starts. Left to uvicorn, the bind failed after start-up had connected to the broker and
ended in its own log lines plus ours.
"""

from __future__ import annotations

import errno
import socket

from plantwatch.settings import ConfigError

# uvicorn's own default listen backlog.
BACKLOG = 2048


def bind_api(host: str, port: int, *, port_key: str = "api.port") -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to (``localhost``: often IPv4 and IPv6).

    Raises :class:`ConfigError` naming ``api.host`` or ``port_key`` (the demo's is its ``--port``).
    Port 0 takes a free port; read it with :func:`listening_url`.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"api.host: cannot resolve {host!r}: {exc.strerror}") from None
    addresses = list(dict.fromkeys((family, address[:2]) for family, _, _, _, address in found))
    sockets: list[socket.socket] = []
    for family, (address, _) in addresses:
        address = str(address)  # a TCP sockaddr starts with the host as text; typeshed allows an int there
        try:
            # create_server sets SO_REUSEADDR (a restart need not wait for TIME_WAIT; a listening port
            # still refuses) and IPV6_V6ONLY, as asyncio does for uvicorn's own binds.
            sock = socket.create_server((address, port), family=family, backlog=BACKLOG)
            # Accepted connections inherit TCP_NODELAY. asyncio sets it itself only on sockets whose
            # protocol number says TCP, and create_server leaves that 0: every answer on a kept-alive
            # connection then waited 40 ms for the client's delayed ACK (bench/alerts_api.py: 44 ms
            # for any request, 0.4 ms with it).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sockets.append(sock)
        except OSError as exc:
            for sock in sockets:
                sock.close()
            raise ConfigError(_why_not(exc, address, port, port_key)) from None
        port = sockets[0].getsockname()[1]  # port 0: the other addresses take the same free port
    return sockets


def _why_not(exc: OSError, address: str, port: int, port_key: str) -> str:
    where = f"{_bracketed(address)}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{port_key}: {where} is in use; stop the program that listens there or choose another {port_key}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"api.host: {address} is not an address of this machine; use one of its addresses, or 0.0.0.0 for all"
    if exc.errno == errno.EACCES:
        return f"{port_key}: no permission to listen on {where} (ports below 1024 need privileges); choose another"
    return f"api.host/{port_key}: cannot listen on {where}: {exc.strerror or exc}"


def listening_url(sockets: list[socket.socket]) -> str:
    """``http://ADDRESS:PORT`` of the first socket, with the port it really got."""
    address, port = sockets[0].getsockname()[:2]
    return f"http://{_bracketed(address)}:{port}"


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address
