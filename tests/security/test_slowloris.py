"""Attack: slowloris. Hold connections open by trickling a request head (or a body)
a few bytes at a time, or just open many, until the server runs out of descriptors.

Before, a connection that sent one header line every few seconds stayed open
for ever. Against a real ``registryd serve`` with small limits: a trickled head
and a silent connection are closed after ``header_timeout_seconds``, a body that
stops arriving after ``body_idle_timeout_seconds``, and connections beyond
``max_connections_per_address`` at once; honest requests keep working.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.process.conftest import Launcher, ServerProcess, launcher  # noqa: F401 - fixture

LIMITS = {
    "REGISTRYD_HEADER_TIMEOUT_SECONDS": "1",
    "REGISTRYD_BODY_IDLE_TIMEOUT_SECONDS": "1",
    "REGISTRYD_MAX_CONNECTIONS_PER_ADDRESS": "4",
}


def _connect(server: ServerProcess) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), or None if it did not."""
    started = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - started < within:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


def _trickle_until_closed(sock: socket.socket, lines: list[bytes], within: float) -> float | None:
    started = time.monotonic()
    for line in lines:
        try:
            sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        if _closed_by_server(sock, 0.3) is not None:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            break
    return None


def _ping(server: ServerProcess) -> bytes:
    with _connect(server) as sock:
        sock.sendall(b"GET /v1/_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(4096):
            response += chunk
    return response.split(b"\r\n", 1)[0]


def test_trickled_heads_and_idle_bodies_are_cut_off(
    launcher: Launcher,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    database_url: str,
) -> None:
    server = launcher.start(tmp_path / "data", database_url, env=LIMITS)

    # A head trickled a line every 0.3 s: the deadline does not move with it.
    with _connect(server) as sock:
        lines = [b"GET /v1/_ping HTTP/1.1\r\n"] + [b"X-Slow: %d\r\n" % n for n in range(40)]
        seconds = _trickle_until_closed(sock, lines, within=10)
        assert seconds is not None, "a trickled request head was never cut off"
        assert seconds < 5
    # A connection that never says anything.
    with _connect(server) as sock:
        seconds = _closed_by_server(sock, within=10)
        assert seconds is not None
        assert 0.5 < seconds < 5
    # A body that stops arriving after its first byte.
    with _connect(server) as sock:
        sock.sendall(
            b"POST /v1/users/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        seconds = _closed_by_server(sock, within=10)
        assert seconds is not None, "an idle request body was never cut off"
        assert seconds < 5
    assert _ping(server) == b"HTTP/1.1 200 OK"
    # Each cut is logged; the line may land a moment after the client saw the close.
    deadline = time.monotonic() + 5
    while "request body idle for more than 1s" not in (log := server.log()):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    assert "request head not complete within 1s" in log


def test_connections_beyond_the_per_address_cap_are_closed_at_once(
    launcher: Launcher,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    database_url: str,
) -> None:
    server = launcher.start(
        tmp_path / "data", database_url, env={**LIMITS, "REGISTRYD_HEADER_TIMEOUT_SECONDS": "30"}
    )
    held = [_connect(server) for _ in range(4)]
    try:
        with _connect(server) as extra:
            seconds = _closed_by_server(extra, within=5)
            assert seconds is not None, "a connection beyond the cap was kept"
            assert seconds < 1
        # The held ones are still served.
        held[0].sendall(b"GET /v1/_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200 OK")
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, the address may connect again.
    deadline = time.monotonic() + 5
    while True:
        try:
            assert _ping(server) == b"HTTP/1.1 200 OK"
            break
        except (ConnectionResetError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert "it already has 4 open" in server.log()
