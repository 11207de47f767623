"""moto's standalone S3 server as a process of its own: the tests' S3 endpoint.

``S3Server().start()`` runs ``moto_server`` on a free 127.0.0.1 port and waits
until it answers; ``create_bucket`` makes a bucket (valid S3 names only);
``stop`` ends the process by its PID (a stopped server loses its data, as moto
keeps everything in memory), and ``start`` may run it again on the same port.
Credentials: moto accepts any; the tests put dummy ones in the environment so
botocore's standard chain finds them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# What the AWS chain reads in every test process and every server under test.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "registryd-test",
    "AWS_SECRET_ACCESS_KEY": "registryd-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _moto_server() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
    return found


class S3Server:
    """One moto server process; ``url`` is its endpoint."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_seconds: float = 30.0) -> None:
        if self.process is not None:
            raise RuntimeError("already running")
        self.process = subprocess.Popen(
            [_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **CREDENTIALS},
        )
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answers: ready
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not answer in time") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """End the process (by its PID) and wait for it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (a PUT on the path-style URL; moto needs no signature)."""
        request = urllib.request.Request(f"{self.url}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
