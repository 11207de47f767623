"""The bench's servers: none left running when a later one fails to start; nginx over TLS
with the bench's certificate; the bare aiohttp floor of the HEAD round trips."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.__main__ import running
from bench.targets import (
    Server,
    find_binary,
    make_certificate,
    start_bare_aiohttp,
    start_nginx,
    start_registryd,
)


def test_servers_started_before_a_failing_one_are_stopped(tmp_path: Path) -> None:
    started: list[Server] = []

    def first() -> Server:
        started.append(start_registryd(tmp_path / "first", None))
        return started[0]

    with (
        pytest.raises(RuntimeError, match="registryd exited"),
        running(
            {
                "first": first,
                # Not a mode registryd knows: it refuses to start.
                "second": lambda: start_registryd(tmp_path / "second", None, auth_mode="x"),
            }
        ),
    ):
        pass
    assert len(started) == 1
    assert started[0].proc.poll() is not None  # stopped, not left running


def _get(server: Server, path: str, tls: ssl.SSLContext | None) -> tuple[int, bytes]:
    url = f"{'https' if tls else 'http'}://127.0.0.1:{server.port}{path}"
    with urllib.request.urlopen(url, timeout=10, context=tls) as resp:
        return resp.status, resp.read()


@pytest.mark.skipif(find_binary("nginx") is None, reason="nginx is not installed")
def test_nginx_serves_over_tls_with_the_bench_certificate(tmp_path: Path) -> None:
    pair = make_certificate(tmp_path / "tls")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "blob").write_bytes(b"layer")
    server = start_nginx(tmp_path / "nginx", tmp_path / "files", None, tls=pair)
    try:
        assert server.scheme == "https"
        context = server.tls_context()
        assert context is not None
        # Verified against the certificate as CA, for the IP the clients use.
        assert _get(server, "/blob", context) == (200, b"layer")
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(server, "/blob", ssl.create_default_context())  # not trusted by default
    finally:
        server.stop()


def test_bare_aiohttp_answers_head_without_a_body(tmp_path: Path) -> None:
    server = start_bare_aiohttp(tmp_path / "bare", None)
    try:
        request = urllib.request.Request(server.url + "/blob", method="HEAD")
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == "1024"
            assert resp.read() == b""
    finally:
        server.stop()
