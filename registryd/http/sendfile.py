"""Zero-copy blob bodies: ``os.sendfile`` from the blob's file straight into the client's socket.

uvloop never implemented ``loop.sendfile``; aiohttp then silently copies the
file through a thread pool, which halves throughput. This module does what
asyncio's selector loop does natively, on any loop: once the transport's own
buffer is empty, the kernel moves page-cache pages to the socket and the loop
only waits for the socket to become writable again.

The socket's descriptor is duplicated first. A loop refuses a second watcher on
a descriptor its transport owns, and the duplicate stays valid if the transport
closes its own while we wait, so a send can never land on a recycled number.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Protocol

# Bytes offered to one sendfile call. A non-blocking socket takes what fits in
# its buffer anyway; the cap only bounds how long one connection keeps the loop.
MAX_SEND_BYTES = 16 * 1024 * 1024


class Transport(Protocol):
    """What is needed of a transport (uvloop's are not asyncio.WriteTransport subclasses)."""

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...


def usable(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The transport's TCP/Unix socket if sendfile may write to it, else None.

    TLS transports (and anything without a socket) need the bytes in user space.
    """
    if transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(sock, "fileno"):
        return None
    return sock  # type: ignore[no-any-return]


async def send_file_range(
    transport: Transport, sock: socket.socket, file_fd: int, offset: int, count: int
) -> None:
    """Write ``count`` bytes of ``file_fd`` from ``offset`` to the transport's socket.

    Waits until the transport's buffered bytes (status line, headers) have left
    first, so the body follows them in order. Does not block: the socket is
    non-blocking and the loop waits for writability. Raises ConnectionResetError
    when the client goes away, OSError when the file is shorter than promised.
    """
    loop = asyncio.get_running_loop()
    out_fd = os.dup(sock.fileno())
    try:
        while transport.get_write_buffer_size():
            if transport.is_closing():
                raise ConnectionResetError("client went away")
            await _writable(loop, out_fd)
            await asyncio.sleep(0)  # let the transport's own writer flush first
        end = offset + count
        while offset < end:
            if transport.is_closing():
                raise ConnectionResetError("client went away")
            wanted = min(end - offset, MAX_SEND_BYTES)
            try:
                sent = os.sendfile(out_fd, file_fd, offset, wanted)
            except BlockingIOError:
                await _writable(loop, out_fd)
                continue
            except OSError as exc:
                if isinstance(exc, ConnectionError):
                    raise ConnectionResetError("client went away") from exc
                raise
            if sent == 0:
                raise OSError(f"blob shrank while being served (at byte {offset})")
            offset += sent
            if offset >= end:
                break  # done: no yield to the loop (a task step more per request) is needed
            if sent < wanted:
                await _writable(loop, out_fd)  # the socket buffer is full
            else:
                await asyncio.sleep(0)  # fair to the other connections on this loop
    finally:
        os.close(out_fd)


@contextlib.contextmanager
def corked(sock: socket.socket) -> Iterator[None]:
    """TCP_CORK while the head and the body go out: full segments only, the head in
    the first of them (nginx's ``tcp_nopush``). Without it, with TCP_NODELAY, every
    sendfile that finds a little room sends a small segment, and the client spends
    a read and an ACK on each."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        yield
        return
    # A closed transport's socket raises OSError, or (uvloop's stand-in socket, whose
    # descriptor is then -1) ValueError: the connection is gone either way.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    except (OSError, ValueError):
        yield  # the send will say so
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    waiter = loop.create_future()
    loop.add_writer(fd, _wake, waiter)
    try:
        await waiter
    finally:
        loop.remove_writer(fd)
