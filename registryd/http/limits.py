"""Connection limits aiohttp lacks: a deadline for request heads, one for idle bodies,
and a cap on connections per client address (slowloris and descriptor exhaustion).

- ``header_timeout_seconds``: from a connection's first moment (or a kept-alive
  connection's first byte of its next request) the whole request head must
  arrive within this time. Trickling a byte at a time does not extend it.
- ``body_idle_timeout_seconds``: while a handler waits for more of a request
  body, the client may not stay silent longer than this.
- ``max_connections_per_address``: connections beyond it, from one address,
  are closed as soon as they are accepted (per process).

Offenders are closed (reset) without an answer. One watchdog task per server
checks every connection a few times per smallest timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from registryd.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    header_timeout: float  # 0: none
    body_idle_timeout: float  # 0: none
    max_per_address: int  # 0: none

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.header_timeout_seconds,
            settings.body_idle_timeout_seconds,
            settings.max_connections_per_address,
        )

    @property
    def check_interval(self) -> float | None:
        timeouts = [t for t in (self.header_timeout, self.body_idle_timeout) if t > 0]
        return min(1.0, max(0.05, min(timeouts) / 4)) if timeouts else None


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


class LimitedRequestHandler(RequestHandler):
    """aiohttp's connection protocol, plus the bookkeeping the watchdog reads."""

    def __init__(self, manager: LimitedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limited = manager
        self._remote = ""
        self._rejected = False
        # When the request head being waited for started (None: not waiting for one).
        self._head_since: float | None = None
        self._last_data = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._remote = _address(transport)
        if not self._limited.admit(self._remote):
            self._rejected = True
            cast(asyncio.Transport, transport).abort()  # before aiohttp starts anything for it
            return
        super().connection_made(transport)
        self._head_since = self._last_data = self._loop.time()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._rejected:
            return
        self._limited.release(self._remote)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        now = self._loop.time()
        self._last_data = now
        idle_between_requests = not self._request_in_progress and not self._messages
        if self._head_since is None and idle_between_requests and data:
            self._head_since = now  # the first byte of a kept-alive connection's next request
        super().data_received(data)
        if self._messages or self._request_in_progress:
            self._head_since = None

    def overdue(self, now: float, limits: Limits) -> str | None:
        """Why this connection must be closed now, or None."""
        since = self._head_since
        if (
            limits.header_timeout > 0
            and since is not None
            and not self._request_in_progress
            and now - since > limits.header_timeout
        ):
            return f"request head not complete within {limits.header_timeout:g}s"
        request = self._current_request
        if (
            limits.body_idle_timeout > 0
            and request is not None
            and not request.content.is_eof()
            and self.transport is not None
            and getattr(self.transport, "is_reading", lambda: True)()
            and now - self._last_data > limits.body_idle_timeout
        ):
            return f"request body idle for more than {limits.body_idle_timeout:g}s"
        return None


class LimitedServer(web.Server):
    """aiohttp's low-level server, making LimitedRequestHandler connections."""

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._per_address: Counter[str] = Counter()
        self._watchdog: asyncio.Task[None] | None = None

    def __call__(self) -> RequestHandler:
        return LimitedRequestHandler(self, loop=self._loop, **self._kwargs)

    def admit(self, address: str) -> bool:
        cap = self.limits.max_per_address
        if cap and self._per_address[address] >= cap:
            log.warning(
                "closing a connection from %s: it already has %d open",
                address,
                cap,
                extra={"fields": {"remote": address}},
            )
            return False
        self._per_address[address] += 1
        if self._watchdog is None and self.limits.check_interval is not None:
            self._watchdog = self._loop.create_task(self._watch(self.limits.check_interval))
        return True

    def release(self, address: str) -> None:
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            for handler, transport in list(self._connections.items()):
                if not isinstance(handler, LimitedRequestHandler):
                    continue
                reason = handler.overdue(now, self.limits)
                if reason is not None:
                    log.info(
                        "closing the connection from %s: %s",
                        handler._remote,
                        reason,
                        extra={"fields": {"remote": handler._remote}},
                    )
                    transport.abort()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - aiohttp's
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        await super().shutdown(timeout)


class LimitedAppRunner(web.AppRunner):
    """``web.AppRunner`` whose server enforces ``limits`` on every connection."""

    def __init__(self, app: web.Application, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return LimitedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            limits=self._limits,
            **plain._kwargs,
        )
