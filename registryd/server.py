"""One serving process: listen, run until SIGTERM or SIGINT, then drain and exit cleanly.

The drain, in order:

1. ``/readyz`` answers 503, and for ``drain_delay_seconds`` connections are
   still accepted, so that load balancers (Kubernetes endpoints) stop routing
   here before anything is refused;
2. the listener closes; a keep-alive connection closes after its next response;
3. in-flight requests get ``drain_timeout_seconds`` to finish (a second
   signal cuts this short);
4. whatever is still running is cancelled: an upload's pending blob is
   discarded as its handler unwinds, so nothing half-written is committed;
5. the application's cleanup runs (pool closed) and ``serve`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import time

from aiohttp import web

from registryd import __version__
from registryd.app import create_app
from registryd.config import Settings
from registryd.http.limits import LimitedAppRunner, Limits
from registryd.http.tls import ReloadingContext
from registryd.keys import LIFECYCLE
from registryd.ops.lifecycle import Lifecycle
from registryd.ops.observe import UnroutedAccessLogger

log = logging.getLogger("registryd")

# How long cancelled requests get to unwind (remove temp files, roll back).
CANCEL_GRACE_SECONDS = 5.0


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    """Serve ``settings`` until a signal, then drain; ``database_url`` must be migrated.

    ``reuse_port`` lets several processes listen on one port (SO_REUSEPORT).
    """
    app = create_app(settings)
    # Signals are handled here, not by aiohttp, so that the drain comes first.
    runner = LimitedAppRunner(
        app,
        limits=Limits.from_settings(settings),
        handle_signals=False,
        shutdown_timeout=CANCEL_GRACE_SECONDS,
        access_log_class=UnroutedAccessLogger,
        access_log=logging.getLogger("registryd.access"),
    )
    tls = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        tls = await asyncio.to_thread(
            ReloadingContext, settings.tls_cert_file, settings.tls_key_file
        )
    await runner.setup()
    reloader = asyncio.create_task(tls.run()) if tls is not None else None
    try:
        site = web.TCPSite(
            runner,
            settings.host,
            settings.port,
            reuse_port=reuse_port or None,
            ssl_context=tls.listening if tls is not None else None,
        )
        await site.start()
        scheme = "https" if tls is not None else "http"
        for address in runner.addresses:
            log.info("registryd %s listening on %s (%s)", __version__, address, scheme)
        signals = asyncio.Queue[int]()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        received = await signals.get()
        log.info("received %s: draining", signal.Signals(received).name)
        hurry = asyncio.Event()
        hurry_on_next = asyncio.create_task(_set_on_next(signals, hurry))
        try:
            await drain(runner, app[LIFECYCLE], settings, hurry)
        finally:
            hurry_on_next.cancel()
    finally:
        if reloader is not None:
            reloader.cancel()
        await runner.cleanup()
    log.info("stopped")


async def _set_on_next(signals: asyncio.Queue[int], event: asyncio.Event) -> None:
    sig = await signals.get()
    log.warning("received %s again: cancelling in-flight requests now", signal.Signals(sig).name)
    event.set()


async def drain(
    runner: web.AppRunner, lifecycle: Lifecycle, settings: Settings, hurry: asyncio.Event
) -> None:
    """Steps 1-4 of the module docstring; the caller's ``runner.cleanup()`` is step 5."""
    started = time.monotonic()
    lifecycle.draining = True
    if settings.drain_delay_seconds > 0:
        log.info("readyz answers 503; closing the listener in %gs", settings.drain_delay_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), settings.drain_delay_seconds)
    for site in list(runner.sites):
        await site.stop()
    # Not aiohttp's pre_shutdown() here: it also stops reading from connections
    # whose request is mid-body, which would stall every upload in flight.
    # Keep-alive connections close after their next response instead (see
    # observe.py), and idle ones when runner.cleanup() runs.
    in_flight = lifecycle.in_flight
    log.info(
        "listener closed; waiting up to %gs for %d request(s)",
        settings.drain_timeout_seconds,
        in_flight,
        extra={"fields": {"in_flight": in_flight}},
    )
    if await lifecycle.wait_idle(settings.drain_timeout_seconds, hurry):
        cancelled = 0
    else:
        cancelled = await lifecycle.cancel_in_flight(CANCEL_GRACE_SECONDS)
        log.warning("cancelled %d request(s) still running", cancelled)
    drain_seconds = time.monotonic() - started
    log.info(
        "drained in %.2fs",
        drain_seconds,
        extra={"fields": {"drain_seconds": round(drain_seconds, 3), "cancelled": cancelled}},
    )


def raise_open_files_limit() -> int:
    """Raise the soft limit on open descriptors to the hard one; return the new soft limit.

    Every connection, every blob kept open for reuse (``open_files``) and every
    upload holds a descriptor, and a soft limit of 1024 is still common. Go's
    runtime and nginx's ``worker_rlimit_nofile`` do the same.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            log.warning("could not raise the open files limit above %d", soft)
            return soft
        log.debug("open files limit raised from %d to %d", soft, hard)
    return hard
