"""Run ``registryd`` as a real process, as an operator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The command line of deploy/'s Deployment and Containerfile (tests/deploy checks
# that they match): settings come from the environment, as in a container.
SERVE_COMMAND = ("registryd", "serve")


def serve_argv() -> list[str]:
    """SERVE_COMMAND, with the console script this venv installed."""
    script = Path(sys.executable).parent / SERVE_COMMAND[0]
    return [str(script), *SERVE_COMMAND[1:]]


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``registryd ARGS`` to completion with only ``env``'s REGISTRYD_* settings. Blocks."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRYD_")}
    full_env.update(env or {})
    return subprocess.run(
        [serve_argv()[0], *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=full_env,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@dataclass
class Launcher:
    tmp_path: Path
    started: list[ServerProcess] = field(default_factory=list)

    def start(
        self,
        data_dir: Path,
        database_url: str | None,
        *args: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> ServerProcess:
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRYD_")}
        full_env["REGISTRYD_AUTH_MODE"] = "none"  # these tests are about the process
        if database_url is not None:
            full_env["REGISTRYD_DATABASE_URL"] = database_url
        full_env["REGISTRYD_DATA_DIR"] = str(data_dir)
        full_env["REGISTRYD_PORT"] = str(port)
        # In the test's own directory: a killed server cannot remove its default temp dir.
        full_env["REGISTRYD_METRICS_DIR"] = str(self.tmp_path / f"metrics-{len(self.started)}")
        full_env.update(env or {})
        log_path = self.tmp_path / f"server-{len(self.started)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*serve_argv(), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
            )
        server = ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)
        self.started.append(server)
        if wait:
            self.wait_ready(server)
        return server

    @staticmethod
    def wait_ready(server: ServerProcess, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise AssertionError(f"server exited {server.proc.returncode}:\n{server.log()}")
            try:
                with urllib.request.urlopen(server.url + "/v1/_ping", timeout=1) as resp:
                    # Ours, not another test's server that took the port first (ours
                    # then fails to bind): only a process that listens says so.
                    if resp.status == 200 and "listening on" in server.log():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout}s:\n{server.log()}")


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launch = Launcher(tmp_path)
    yield launch
    for server in launch.started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
