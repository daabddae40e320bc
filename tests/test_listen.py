"""The API's sockets, bound before the service starts: a port in use or a bad host is one line naming the key."""

from __future__ import annotations

import socket

import pytest

from plantwatch.service.listen import bind_api, listening_url
from plantwatch.settings import ConfigError


def test_port_0_takes_a_free_port_and_the_url_names_it() -> None:
    sockets = bind_api("127.0.0.1", 0)
    try:
        port = sockets[0].getsockname()[1]
        assert port > 0 and listening_url(sockets) == f"http://127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # listening already
            pass
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_in_use_names_the_key_it_came_from() -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError) as refused:
            bind_api("127.0.0.1", port)
        assert str(refused.value) == (
            f"api.port: 127.0.0.1:{port} is in use; stop the program that listens there or choose another api.port"
        )
        with pytest.raises(ConfigError, match=r"^--port: 127.0.0.1:\d+ is in use; .* choose another --port$"):
            bind_api("127.0.0.1", port, port_key="--port")


def test_an_address_of_another_machine_and_an_unknown_host_name_api_host() -> None:
    with pytest.raises(ConfigError, match=r"^api.host: 192.0.2.1 is not an address of this machine; "):
        bind_api("192.0.2.1", 0)  # TEST-NET-1: never a local address
    with pytest.raises(ConfigError, match=r"^api.host: cannot resolve 'no-such-host.invalid': "):
        bind_api("no-such-host.invalid", 0)


def test_an_ipv6_address_is_bracketed_in_the_url() -> None:
    sockets = bind_api("::1", 0)
    try:
        assert listening_url(sockets) == f"http://[::1]:{sockets[0].getsockname()[1]}"
    finally:
        for sock in sockets:
            sock.close()


def test_answers_go_out_at_once_on_kept_alive_connections() -> None:
    """Accepted connections carry TCP_NODELAY: without it, each answer on a kept-alive connection waited
    40 ms for the client's delayed ACK (asyncio sets it only on sockets created with protocol TCP)."""
    (listener,) = bind_api("127.0.0.1", 0)
    try:
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
