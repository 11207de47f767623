"""Request ids and error rendering: handlers only ``raise``; this turns it into a response."""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from registryd.db.pool import OUTAGE, OUTAGE_ERRORS
from registryd.errors import BodyIncomplete, DatabaseUnavailable, RegistryError, Retryable

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Outage errors raised by statements on an acquired connection. Not OSError in
# general: outside the pool that is the storage's (disk full is not a database outage).
_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    *(e for e in OUTAGE_ERRORS if issubclass(e, Exception) and not issubclass(e, OSError)),
    TimeoutError,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Renders a domain error or an aiohttp HTTP error in one protocol's wire format.
ErrorRenderer = Callable[[web.Request, RegistryError | web.HTTPException], web.Response]
# Renders an unexpected failure (a 500) in one protocol's wire format, naming the request id.
InternalErrorRenderer = Callable[[web.Request, str], web.Response]


def request_id(request: web.Request) -> str:
    return request[REQUEST_ID]


class _RequestIds:
    """16 hex digits: a random 32-bit prefix per process, then a counter.

    Unique within the process and (but for a 1 in 2**32 chance per pair of
    processes) across processes, without a ``getrandom`` call per request. A fork
    takes a new prefix, or every worker would count through the same ids; so does
    a counter that wraps.
    """

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count()

    def next(self) -> str:
        n = next(self._counter)
        if n > 0xFFFFFFFF:
            self._reseed()
            n = next(self._counter)
        return f"{self._prefix}{n:08x}"


_REQUEST_IDS = _RequestIds()


def ensure_request_id(request: web.Request) -> str:
    """The request's id: kept from a well-formed ``X-Request-Id`` header, else generated."""
    if (rid := request.get(REQUEST_ID)) is None:
        incoming = request.headers.get(REQUEST_ID_HEADER)
        if incoming is not None and _REQUEST_ID_RE.fullmatch(incoming):
            rid = incoming
        else:
            rid = _REQUEST_IDS.next()
        request[REQUEST_ID] = rid
    return rid


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response, streamed ones too, carries its request id."""
    response.headers[REQUEST_ID_HEADER] = ensure_request_id(request)


def error_middleware(render: ErrorRenderer, render_internal: InternalErrorRenderer) -> Middleware:
    """Middleware rendering errors in one protocol's wire format.

    Each protocol (a sub-application) installs its own, so nothing guesses the protocol from
    the path. Whatever escapes a handler is answered here: a domain error by ``render``, an
    unexpected one (or a domain error ``render`` has no entry for) as a 500 with the request
    id, by ``render_internal``, its traceback logged once.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = ensure_request_id(request)
        try:
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 - error_response answers or re-raises it
            return error_response(request, rid, exc, render, render_internal)

    return middleware


def error_response(
    request: web.Request,
    rid: str,
    exc: Exception,
    render: ErrorRenderer,
    render_internal: InternalErrorRenderer,
) -> web.Response:
    """The answer to ``exc``, raised by a handler (see ``error_middleware``); re-raises
    an aiohttp HTTP exception below 400 (a redirect), which aiohttp sends itself.

    A function of its own, so the outermost middleware (``ops/observe.py``) answers
    the root application's errors without a middleware layer more per request.
    """
    if isinstance(exc, RegistryError):
        if isinstance(exc, BodyIncomplete):
            # The client went away mid-body: nothing to report but the fact (499).
            log.info("request %s %s: client disconnected mid-body (499)", rid, request.path)
        response = _rendered(request, rid, exc, render, render_internal)
        if isinstance(exc, Retryable):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _rendered(request, rid, exc, render, render_internal)
    if isinstance(exc, _DATABASE_ERRORS):
        # A connection lost or a statement timed out mid-request: the database's
        # fault, not the request's (connect failures already arrive as DatabaseUnavailable).
        OUTAGE.failed(exc)
        unavailable = DatabaseUnavailable()
        response = _rendered(request, rid, unavailable, render, render_internal)
        response.headers["Retry-After"] = str(unavailable.retry_after)
        return response
    log.error("request %s %s %s failed", rid, request.method, request.path, exc_info=exc)
    return render_internal(request, rid)


def _rendered(
    request: web.Request,
    rid: str,
    exc: RegistryError | web.HTTPException,
    render: ErrorRenderer,
    render_internal: InternalErrorRenderer,
) -> web.Response:
    try:
        return render(request, exc)
    except Exception:  # an error no table maps: a programming error, still a 500 in shape
        log.exception("request %s %s %s: no rendering", rid, request.method, request.path)
        return render_internal(request, rid)
