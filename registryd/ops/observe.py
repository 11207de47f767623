"""The outermost middleware: one access-log line and one set of metric samples per request.

It also counts the request as in flight for the drain, answers the root
application's errors (sub-applications answer their own first), so it sees the
status the client got, and it logs probes and scrapes at debug level so that
they do not drown the log.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from registryd.http.client_address import client_address
from registryd.http.middleware import (
    REQUEST_ID,
    ErrorRenderer,
    InternalErrorRenderer,
    ensure_request_id,
    error_response,
)
from registryd.keys import LIFECYCLE, METRICS, REPOSITORY, SERVICES, SETTINGS, USER

log = logging.getLogger("registryd.access")

# Routes a kubelet or Prometheus calls every few seconds.
QUIET_ROUTES = frozenset({"/livez", "/readyz", "/metrics"})
UNMATCHED_ROUTE = "unmatched"
# nginx's "client closed request": the client went away, or the drain cancelled it.
STATUS_GONE = 499
# Methods that change nothing: the access cache stays after them.
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def route_of(request: web.Request) -> str:
    """The route template (``/v1/images/{image_id}/layer``), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def repository_of(request: web.Request) -> str | None:
    """The repository the request names: set by whoever knows, else read from the path."""
    if (repository := request.get(REPOSITORY)) is not None:
        return str(repository)
    match = request.match_info
    if "name" in match:  # v2: /v2/<name>/...
        return match["name"]
    if "repository" not in match:
        return None
    # v1 one-segment names mean library/<name> (v1 spec §3).
    return f"{match.get('namespace', 'library')}/{match['repository']}"


def _sent_bytes(request: web.Request, response: web.StreamResponse) -> int:
    if request.method == "HEAD":
        return 0
    if response.content_length is not None:
        # Also right for zero-copy sendfile, which bypasses the writer's byte count.
        return response.content_length
    return response.body_length


def observe_middleware(render: ErrorRenderer, render_internal: InternalErrorRenderer) -> Middleware:
    """The root application's one middleware: access log, metrics, drain, its errors.

    Three jobs in one layer, since every layer is a coroutine and a call more on every
    request: errors that reach the root (its own routes') are answered by ``render``
    and ``render_internal`` (see ``http/middleware.error_middleware``); after any
    write this process's access cache is emptied before the answer goes out (other
    processes learn of it by NOTIFY within milliseconds; the writer's own next
    request, a client that made a repository private and reads it at once, must not
    even have that window).
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        rid = ensure_request_id(request)
        app = request.app
        metrics, lifecycle = app[METRICS], app[LIFECYCLE]
        method = request.method
        route = route_of(request)
        route_metrics = metrics.route(method, route)
        in_progress = route_metrics.in_progress
        in_progress.inc()
        status, sent = 500, 0
        task = lifecycle.started()
        try:
            try:
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - error_response answers or re-raises it
                response = error_response(request, rid, exc, render, render_internal)
            finally:
                svc = app.get(SERVICES) if method not in _READS else None
                if svc is not None and svc.access is not None:
                    svc.access.invalidate()
            status, sent = response.status, _sent_bytes(request, response)
            if lifecycle.draining:
                response.force_close()  # no further requests on this connection
            return response
        except web.HTTPException as exc:  # redirects and the like, re-raised by error_response
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = STATUS_GONE
            raise
        finally:
            lifecycle.finished(task)
            in_progress.dec()
            duration = time.perf_counter() - started
            received = request.content.total_bytes
            route_metrics.observe(status, duration, received, sent)
            level = logging.DEBUG if route in QUIET_ROUTES and status < 500 else logging.INFO
            # The line's fields cost more than this check; skip them when it is not logged.
            if log.isEnabledFor(level):
                drained = status == STATUS_GONE and lifecycle.draining
                _log_request(request, rid, route, level, status, received, sent, duration, drained)

    return middleware


def _log_request(
    request: web.Request,
    rid: str,
    route: str,
    level: int,
    status: int,
    received: int,
    sent: int,
    duration: float,
    cancelled_by_drain: bool,
) -> None:
    log.log(
        level,
        "%s %s %d",
        request.method,
        request.path_qs,
        status,
        extra={
            "fields": {
                "request_id": rid,
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": status,
                "bytes_received": received,
                "bytes_sent": sent,
                "duration_ms": round(duration * 1000, 3),
                "user": request.get(USER),
                "repository": repository_of(request),
                "remote": client_address(request, request.config_dict[SETTINGS].trusted_proxies),
                "cancelled_by_drain": cancelled_by_drain or None,
            }
        },
    )


class UnroutedAccessLogger(AbstractAccessLogger):
    """aiohttp's access log, for the requests the middleware never saw.

    Those are the ones aiohttp answers itself (a malformed request line, a TLS
    handshake on the plain-HTTP port); everything else is logged above.
    """

    @property
    def enabled(self) -> bool:
        # Read by aiohttp once per connection: when these lines are not logged, it skips
        # the call (and the clock read it times it with) on every request.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if REQUEST_ID in request:
            return
        version = request.version
        line = f"{request.method} {request.path_qs} HTTP/{version.major}.{version.minor}"
        self.logger.info(
            '"%s" %d',
            line,
            response.status,
            extra={
                "fields": {
                    "request_line": line,
                    "status": response.status,
                    "duration_ms": round(time * 1000, 3),
                    "remote": request.remote,
                }
            },
        )
