"""Request ids and error rendering: handlers only ``raise``; this turns it into a response."""

from __future__ import annotations

import logging
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


def ensure_request_id(request: web.Request) -> str:
    """The request's id: kept from a well-formed ``X-Request-Id`` header, else generated."""
    if (rid := request.get(REQUEST_ID)) is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if _REQUEST_ID_RE.fullmatch(incoming) else secrets.token_hex(8)
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

    def rendered(
        request: web.Request, rid: str, exc: RegistryError | web.HTTPException
    ) -> web.Response:
        try:
            return render(request, exc)
        except Exception:  # an error no table maps: a programming error, still a 500 in shape
            log.exception("request %s %s %s: no rendering", rid, request.method, request.path)
            return render_internal(request, rid)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = ensure_request_id(request)
        try:
            response = await handler(request)
        except BodyIncomplete as exc:
            # The client went away mid-body: nothing to report but the fact (499).
            log.info("request %s %s: client disconnected mid-body (499)", rid, request.path)
            response = rendered(request, rid, exc)
        except Retryable as exc:
            response = rendered(request, rid, exc)
            response.headers["Retry-After"] = str(exc.retry_after)
        except RegistryError as exc:
            response = rendered(request, rid, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = rendered(request, rid, exc)
        except _DATABASE_ERRORS as exc:
            # A connection lost or a statement timed out mid-request: the database's
            # fault, not the request's (connect failures already arrive as DatabaseUnavailable).
            OUTAGE.failed(exc)
            unavailable = DatabaseUnavailable()
            response = rendered(request, rid, unavailable)
            response.headers["Retry-After"] = str(unavailable.retry_after)
        except Exception:
            log.exception("request %s %s %s failed", rid, request.method, request.path)
            response = render_internal(request, rid)
        return response

    return middleware
