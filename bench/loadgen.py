"""A small HTTP/1.1 load generator on uvloop that is not the bottleneck.

Each connection is a ``BufferedProtocol`` reading into one 1 MiB buffer, so a
large body costs a few big reads and no copies; bodies are counted, not kept
(unless small and asked for). Request bodies are streamed from generators, so
a 1 GiB push holds one chunk at a time. Every run is bounded in time and count.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

RECV_BUFFER_BYTES = 1024 * 1024
KEEP_BODY_BYTES = 64 * 1024


class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body_bytes: int
    body: bytes  # only when at most KEEP_BODY_BYTES


class _Protocol(asyncio.BufferedProtocol):
    def __init__(self, recv_buffer_bytes: int = RECV_BUFFER_BYTES) -> None:
        self._buffer = bytearray(recv_buffer_bytes)
        self._view = memoryview(self._buffer)
        self._head = bytearray()
        self._response: asyncio.Future[Response] | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._remaining = -1  # -1: still reading the head
        self._received = 0
        self._kept = bytearray()
        self._keep = False
        self._no_body = False
        self._drained: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        error = ConnectionResetError("connection lost")
        if self._response is not None and not self._response.done():
            self._response.set_exception(error)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(error)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    async def drain(self) -> None:
        if self._drained is not None:
            await self._drained

    def expect(self, keep_body: bool, no_body: bool = False) -> asyncio.Future[Response]:
        self._response = asyncio.get_running_loop().create_future()
        self._head.clear()
        self._kept.clear()
        self._remaining = -1
        self._received = 0
        self._keep = keep_body
        self._no_body = no_body
        return self._response

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        data = self._view[:nbytes]
        if self._remaining < 0:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(bytes(self._head[:end]))
            data = memoryview(bytes(self._head[end + 4 :]))
        if len(data) > self._remaining:
            self._fail(HttpError("more bytes than Content-Length"))
            return
        self._remaining -= len(data)
        self._received += len(data)
        if self._keep and self._received <= KEEP_BODY_BYTES:
            self._kept += data
        if self._remaining == 0:
            self._finish()

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self._status = int(lines[0].split(" ", 2)[1])
        self._headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self._headers[name.strip().lower()] = value.strip()
        if "content-length" not in self._headers:
            self._fail(HttpError(f"no Content-Length in response: {lines[0]}"))
            self._remaining = 1 << 62
            return
        self._remaining = 0 if self._no_body else int(self._headers["content-length"])
        if self._remaining == 0:
            self._finish()

    def _finish(self) -> None:
        if self._response is not None and not self._response.done():
            kept = bytes(self._kept) if self._received <= KEEP_BODY_BYTES else b""
            self._response.set_result(Response(self._status, self._headers, self._received, kept))

    def _fail(self, exc: Exception) -> None:
        if self._response is not None and not self._response.done():
            self._response.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


# A request body: bytes, or an async iterator of chunks (sent as they come).
Body = bytes | memoryview | AsyncIterator[bytes | memoryview] | None


class Connection:
    """One keep-alive connection; requests go one after another (over TLS with ``tls``)."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        recv_buffer_bytes: int = RECV_BUFFER_BYTES,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.recv_buffer_bytes = recv_buffer_bytes
        self._protocol: _Protocol | None = None

    async def _connect(self) -> _Protocol:
        if self._protocol is None or self._protocol.closed.done():
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(
                lambda: _Protocol(self.recv_buffer_bytes), self.host, self.port, ssl=self.tls
            )
            self._protocol = protocol
        return self._protocol

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: Body = None,
        body_bytes: int | None = None,
        keep_body: bool = False,
    ) -> Response:
        """Send one request and wait for the whole response (HEAD: no body)."""
        protocol = await self._connect()
        assert protocol.transport is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body is not None:
            size = body_bytes if body_bytes is not None else len(body)  # type: ignore[arg-type]
            lines.append(f"Content-Length: {size}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        response = protocol.expect(keep_body, no_body=method == "HEAD")
        try:
            protocol.transport.write(head)
            if isinstance(body, bytes | memoryview):
                protocol.transport.write(body)
            elif body is not None:
                async for chunk in body:
                    if response.done():
                        # Answered before the body was sent (an error): the rest
                        # of it would be read as the next request.
                        self.close()
                        break
                    protocol.transport.write(chunk)
                    await protocol.drain()
            result = await response
        except BaseException:
            self.close()  # the stream is in an unknown state: never reuse it
            raise
        if result.headers.get("connection", "").lower() == "close":
            self.close()
        return result

    def close(self) -> None:
        """Close the connection; the next request opens a new one.

        The protocol is dropped at once: ``transport.close()`` only schedules
        ``connection_lost``, and a request written to the closing transport in
        the meantime would fail with "connection lost".
        """
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


@dataclass
class RunResult:
    requests: int = 0
    body_bytes: int = 0  # bytes moved in the measured direction (down for pulls, up for pushes)
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_kinds: Counter[str] = field(default_factory=Counter)  # "ConnectionResetError: ..."
    # (p50, p99) in seconds when the generator reports percentiles instead of latencies (wrk).
    percentiles: tuple[float, float] | None = None


# One operation (a pull, a push of several requests...): returns the bytes it moved.
Operation = Callable[[Connection], Awaitable[int]]


async def run_load(
    host: str,
    port: int,
    operations: Iterable[Operation],
    concurrency: int,
    max_seconds: float,
    max_operations: int,
) -> RunResult:
    """Run ``operations`` (callables returning an awaitable of bytes moved) on ``concurrency``
    connections until ``max_seconds`` or ``max_operations``, whichever comes first."""
    result = RunResult()
    source = iter(operations)
    started = time.perf_counter()
    deadline = started + max_seconds
    issued = 0

    async def worker() -> None:
        nonlocal issued
        conn = Connection(host, port)
        try:
            while time.perf_counter() < deadline and issued < max_operations:
                issued += 1
                operation = next(source)
                t0 = time.perf_counter()
                try:
                    moved = await operation(conn)
                except (OSError, HttpError) as exc:
                    result.errors += 1
                    result.error_kinds[f"{type(exc).__name__}: {exc}"[:160]] += 1
                    conn.close()
                    continue
                result.latencies.append(time.perf_counter() - t0)
                result.requests += 1
                result.body_bytes += moved
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result
