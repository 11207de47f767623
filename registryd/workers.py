"""``serve --workers N``: N server processes sharing one port through ``SO_REUSEPORT``.

The parent owns what must exist once: the embedded PostgreSQL and the migrations
(both done before this module is called) and the port, which it reserves with a
bound, non-listening ``SO_REUSEPORT`` socket so that ``--port 0`` resolves to
one number for every worker. Each worker is a forked process running its own
event loop, pool and caches; the kernel spreads new connections across them.

SIGTERM or SIGINT to the parent stops every worker gracefully, then the parent
returns (and the caller stops PostgreSQL). A worker that dies on its own is
replaced by a new one, as a process manager would, at most
``max_restarts_per_minute`` times a minute; beyond that something is wrong with
every worker, so the parent stops the others and exits 1 for its own
supervisor to act.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from registryd.config import Settings
from registryd.ops.logs import configure_logging

log = logging.getLogger("registryd")

# Beyond a worker's own drain (delay + timeout), how long it may take to unwind.
STOP_GRACE_SECONDS = 15.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket holding ``host:port`` (0: any free port).

    Only listening sockets receive connections, so it takes none away from the workers.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def serve_workers(settings: Settings, run_worker: Callable[[Settings], int]) -> int:
    """Fork ``settings.workers`` processes, each calling ``run_worker``; supervise them.

    ``run_worker`` must listen with SO_REUSEPORT on ``settings.port``. Returns
    0 after a requested stop, 1 when workers died more often than they may be
    restarted. Blocks.
    """
    context = multiprocessing.get_context("fork")
    with reserve_port(settings.host, settings.port) as reserved:
        port: int = reserved.getsockname()[1]
        worker_settings = dataclasses.replace(settings, port=port)

        def new_worker(n: int) -> BaseProcess:
            return context.Process(
                target=_worker_main,
                args=(run_worker, worker_settings, os.getpid()),
                name=f"registryd-worker-{n}",
            )

        workers: list[BaseProcess] = [new_worker(n) for n in range(settings.workers)]
        restarts = RestartBudget(settings.max_restarts_per_minute)
        stopping = False

        def request_stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()  # SIGTERM: the worker's graceful shutdown

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for worker in workers:
                worker.start()
            log.info(
                "registryd serving on %s:%d with %d workers (pids %s)",
                settings.host,
                port,
                len(workers),
                ", ".join(str(w.pid) for w in workers),
            )
            while True:
                died = _wait_for_first_exit(workers)
                if stopping:
                    break
                if not restarts.take():
                    log.error(
                        "worker %s exited with %s after %d restart(s) within a minute; "
                        "stopping the others",
                        died.pid,
                        died.exitcode,
                        restarts.used,
                    )
                    request_stop(signal.SIGTERM, None)
                    stopping = False
                    break
                slot = workers.index(died)
                died.join()
                workers[slot] = new_worker(slot)
                workers[slot].start()
                log.error(
                    "worker %s exited with %s; started worker %s in its place",
                    died.pid,
                    died.exitcode,
                    workers[slot].pid,
                    extra={
                        "fields": {
                            "dead_pid": died.pid,
                            "exit_code": died.exitcode,
                            "new_pid": workers[slot].pid,
                        }
                    },
                )
            stop_timeout = (
                settings.drain_delay_seconds + settings.drain_timeout_seconds + STOP_GRACE_SECONDS
            )
            for worker in workers:
                worker.join(stop_timeout)
                if worker.is_alive():
                    log.warning("worker %s did not stop in time; killing it", worker.pid)
                    worker.kill()
                    worker.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0 if stopping else 1


class RestartBudget:
    """At most ``per_minute`` restarts in any sliding minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._times: collections.deque[float] = collections.deque()

    @property
    def used(self) -> int:
        return len(self._times)

    def take(self) -> bool:
        now = time.monotonic()
        while self._times and now - self._times[0] > 60:
            self._times.popleft()
        if len(self._times) >= self.per_minute:
            return False
        self._times.append(now)
        return True


def _wait_for_first_exit(workers: list[BaseProcess]) -> BaseProcess:
    by_sentinel = {worker.sentinel: worker for worker in workers}
    ready = multiprocessing.connection.wait(list(by_sentinel))
    return by_sentinel[ready[0]]  # type: ignore[index]


# prctl(2) option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive its parent: after a ``kill -9`` of the parent it would
    go on serving the port beside the set a supervisor starts next. On Linux the kernel
    sends SIGTERM (a drain) when the parent dies; elsewhere nothing changes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        raise SystemExit(1)


def _worker_main(
    run_worker: Callable[[Settings], int], settings: Settings, parent_pid: int
) -> None:
    # The parent's handlers were inherited by the fork; the worker's loop installs its own.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    # Threads do not survive a fork: the parent's log listener thread is not running here,
    # so records would pile up in its queue unseen. The worker starts its own.
    stop_logging = configure_logging(settings.log_level, settings.log_format, sys.stderr)
    try:
        code = run_worker(settings)
    finally:
        stop_logging()
    raise SystemExit(code)
