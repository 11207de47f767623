"""A blob body sent with sendfile goes out corked, like nginx's ``tcp_nopush``: the head
rides in the first full segment and no small segment is sent until the body ends (the
client then spends fewer reads and ACKs per response). The cork always comes off."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from registryd.http import sendfile


def _corked(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))


def _tcp_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return listener, client, server


def test_the_cork_is_on_while_sending_and_off_after() -> None:
    listener, client, server = _tcp_pair()
    with listener, client, server:
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as aiohttp does
        assert not _corked(server)
        with sendfile.corked(server):
            assert _corked(server)
            server.sendall(b"head and body")
        assert not _corked(server)
        assert client.recv(100) == b"head and body"  # flushed when the cork came off


def test_the_cork_comes_off_when_the_send_fails() -> None:
    listener, client, server = _tcp_pair()
    with listener, client, server:
        with pytest.raises(ConnectionResetError), sendfile.corked(server):
            raise ConnectionResetError("client went away")
        assert not _corked(server)


def test_a_connection_closed_while_corked_ends_quietly() -> None:
    """The client went away and the transport closed its socket mid-body: uncorking
    it must not turn that into a 500 (the caller already handles the lost client)."""
    listener, client, server = _tcp_pair()
    with listener, client, sendfile.corked(server):
        server.close()


def test_uvloop_stand_in_socket_closed_while_corked_ends_quietly() -> None:
    """uvloop (what the server runs on) hands out a stand-in socket whose descriptor is
    -1 once the transport closed; its setsockopt raises ValueError, not OSError."""

    async def corked_then_closed(host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, host, port)
        with sendfile.corked(transport.get_extra_info("socket")):
            transport.abort()
            await asyncio.sleep(0)  # the loop closes the descriptor

    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(corked_then_closed(*listener.getsockname()))
        finally:
            loop.close()


def test_a_unix_socket_is_left_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        with sendfile.corked(left):
            left.sendall(b"x")
        assert right.recv(1) == b"x"
