"""The servers under test, each started from its own config in a temp dir, on 127.0.0.1 only.

registryd (``python -m registryd serve``, embedded PostgreSQL), the Go reference
registry (Debian's ``docker-registry``, distribution 2.8) and nginx serving the
same blob files with sendfile. ``cpus`` pins a server (and what it starts) with
taskset; None leaves it free. No systemd, no files outside the temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

APT_PACKAGES = ("docker-registry", "nginx", "wrk")
BINARIES = {"distribution": "docker-registry", "nginx": "nginx", "wrk": "wrk"}


def ensure_references() -> None:
    """apt-get install what is missing (root only); the caller skips what is still absent."""
    missing = [
        pkg
        for pkg, exe in zip(APT_PACKAGES, ("docker-registry", "nginx", "wrk"), strict=True)
        if find_binary(exe) is None
    ]
    if not missing or shutil.which("apt-get") is None:
        return
    print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=False,
        env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def find_binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus is not None else []


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    # The certificate a TLS server presents (it is its own CA); None: plain HTTP.
    cafile: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.cafile is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        return None if self.cafile is None else ssl.create_default_context(cafile=self.cafile)

    def tree(self) -> list[psutil.Process]:
        """The server and everything it started (registryd: its workers and PostgreSQL)."""
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def rss_processes(self) -> list[psutil.Process]:
        """The processes whose memory is the server's own (not registryd's PostgreSQL)."""
        return [p for p in self.tree() if not p.name().startswith("postgres")]

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def reset_peak_rss(self) -> None:
        for proc in self.rss_processes():
            with contextlib.suppress(OSError):
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # resets VmHWM

    def peak_rss_bytes(self) -> int:
        """The largest peak RSS (VmHWM) of any one server process since the last reset."""
        peak = 0
        for proc in self.rss_processes():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
        return peak

    def wait_ready(self, path: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.workdir / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1, context=self.tls_context()):
                    return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _spawn(
    name: str,
    workdir: Path,
    port: int,
    argv: list[str],
    env: dict[str, str] | None = None,
    cafile: Path | None = None,
) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "server.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    return Server(name, port, proc, workdir, cafile)


# A PEM certificate and its key (the certificate is self-signed: clients trust it as the CA).
TlsPair = tuple[Path, Path]


# The admin account of a registryd started with auth_mode="token".
ADMIN_USER, ADMIN_PASSWORD = "benchadmin", "bench-admin-password"


def start_registryd(
    workdir: Path,
    cpus: str | None,
    workers: int = 1,
    auth_mode: str = "none",
    settings: dict[str, str] | None = None,
    tls: TlsPair | None = None,
    environ: Mapping[str, str] | None = None,
) -> Server:
    """``auth_mode`` "none" is like the other targets (no accounts, no tokens); "token"
    bootstraps the admin ADMIN_USER. ``settings`` are more REGISTRYD_* variables;
    ``environ`` replaces this process's environment as the base of the server's."""
    port = free_port()
    base = os.environ if environ is None else environ
    env = {k: v for k, v in base.items() if not k.startswith("REGISTRYD_")}
    env["REGISTRYD_AUTH_MODE"] = auth_mode
    # Every simulated client comes from 127.0.0.1: the per-address connection cap (a
    # defence against one host holding every descriptor) would reset the rollout's
    # 1,500 connections, as it would for clients behind one proxy.
    env["REGISTRYD_MAX_CONNECTIONS_PER_ADDRESS"] = "0"
    if auth_mode == "token":
        env["REGISTRYD_ADMIN_USER"], env["REGISTRYD_ADMIN_PASSWORD"] = ADMIN_USER, ADMIN_PASSWORD
    if tls is not None:
        env["REGISTRYD_TLS_CERT_FILE"], env["REGISTRYD_TLS_KEY_FILE"] = map(str, tls)
    env.update(settings or {})
    argv = [
        *_pin(cpus),
        sys.executable,
        "-m",
        "registryd",
        "serve",
        "--data-dir",
        str(workdir / "data"),
        "--port",
        str(port),
        "--log-level",
        "warning",  # no access log, like the others
        "--workers",
        str(workers),
    ]
    server = _spawn("registryd", workdir, port, argv, env, tls[0] if tls else None)
    server.wait_ready("/v1/_ping")
    return server


def start_distribution(workdir: Path, cpus: str | None) -> Server:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {workdir / "data"}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""
    )
    exe = find_binary("docker-registry")
    assert exe is not None
    server = _spawn("distribution", workdir, port, [*_pin(cpus), exe, "serve", str(config)])
    server.wait_ready("/v2/")
    return server


def start_nginx(
    workdir: Path, root: Path, cpus: str | None, workers: int = 1, tls: TlsPair | None = None
) -> Server:
    """nginx serving ``root``; with ``tls``, HTTPS only (TLS 1.2 and 1.3, like registryd)."""
    port = free_port()
    listen = f"127.0.0.1:{port}"
    if tls is not None:
        listen += (
            f" ssl;\n        ssl_certificate {tls[0]};\n        ssl_certificate_key {tls[1]};"
            "\n        ssl_protocols TLSv1.2 TLSv1.3"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "tmp"):
        (workdir / sub).mkdir(exist_ok=True)
    config = workdir / "nginx.conf"
    config.write_text(
        f"""user root;
worker_processes {workers};
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {workdir}/tmp/body;
    proxy_temp_path {workdir}/tmp/proxy;
    fastcgi_temp_path {workdir}/tmp/fastcgi;
    uwsgi_temp_path {workdir}/tmp/uwsgi;
    scgi_temp_path {workdir}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen {listen};
        root {root};
        location / {{ }}
    }}
}}
"""
    )
    exe = find_binary("nginx")
    assert exe is not None
    server = _spawn(
        "nginx",
        workdir,
        port,
        [*_pin(cpus), exe, "-p", str(workdir), "-c", str(config)],
        cafile=tls[0] if tls else None,
    )
    server.wait_ready("/")
    return server


def make_certificate(directory: Path) -> TlsPair:
    """A self-signed P-256 certificate for 127.0.0.1 (openssl CLI), valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def start_bare_aiohttp(workdir: Path, cpus: str | None, root: Path | None = None) -> Server:
    """``bench.bare``: one aiohttp handler on uvloop, the floor registryd is compared with;
    with ``root``, it also sends the files under ``root/blobs`` as registryd does."""
    port = free_port()
    # By path: the server runs in its own directory, where the bench package is not importable.
    script = Path(__file__).with_name("bare.py")
    argv = [*_pin(cpus), sys.executable, str(script), "--port", str(port)]
    if root is not None:
        argv += ["--root", str(root)]
    server = _spawn("aiohttp", workdir, port, argv)
    server.wait_ready("/blob")
    return server
