"""moto's standalone S3 server (``moto[server]`` from PyPI) as the bench's S3 endpoint.

It runs as its own process on a free 127.0.0.1 port, from this interpreter
(``python -m moto.server``), with its spill files (objects above a few MiB)
under the bench's temp dir; it is stopped by its PID like the other servers.
moto does not check signatures, so any access key works; the bench still
gives every client the same dummy pair so that each signs as it would on AWS.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.targets import Server, _pin, _spawn, free_port

BUCKET = "registryd-bench"
REGION = "us-east-1"
# Dummy credentials: moto accepts any; never real ones.
ACCESS_KEY, SECRET_KEY = "bench-access-key", "bench-secret-key"


def available() -> bool:
    """Whether moto's server can run here (``pip install 'moto[server]'``)."""
    return importlib.util.find_spec("moto") is not None and (
        importlib.util.find_spec("flask") is not None
    )


def endpoint(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


def start_moto(workdir: Path, cpus: str | None = None, bucket: str = BUCKET) -> Server:
    """Start moto's server, wait until it answers, create ``bucket``; a ``Server`` whose
    ``stop()`` ends it by its PID. Raises RuntimeError (with its log) if it does not come up."""
    if not available():
        raise RuntimeError("moto's server is not installed: pip install 'moto[server]'")
    port = free_port()
    spill = workdir / "tmp"
    spill.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(spill), "MOTO_PORT": str(port)}
    argv = [*_pin(cpus), sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = _spawn("moto", workdir, port, argv, env)
    try:
        _wait_ready(server, timeout=60)
        create_bucket(server, bucket)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            log = (server.workdir / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"moto exited {server.proc.returncode}:\n{log}")
        try:
            # moto's own API: answers once the app is up, whatever the S3 state.
            with urllib.request.urlopen(f"{endpoint(server)}/moto-api/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto not ready in {timeout}s")


def create_bucket(server: Server, bucket: str) -> None:
    """PUT /<bucket> (path style; moto needs no signature). An existing bucket is kept."""
    request = urllib.request.Request(f"{endpoint(server)}/{bucket}", method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        if "BucketAlreadyOwnedByYou" not in body:
            raise RuntimeError(f"moto: creating bucket {bucket}: HTTP {exc.code} {body}") from None


def object_count(server: Server, bucket: str, prefix: str = "") -> int:
    """Keys under ``prefix`` (first page of ListObjectsV2, up to 1,000)."""
    url = f"{endpoint(server)}/{bucket}?list-type=2&prefix={prefix}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        count: int = resp.read().count(b"<Key>")
    return count
