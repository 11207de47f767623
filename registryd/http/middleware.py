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


def error_middleware(
    renderers: list[tuple[str, ErrorRenderer]], fallback: ErrorRenderer
) -> Middleware:
    """Middleware rendering errors with the renderer of the longest matching path prefix."""

    def pick(request: web.Request) -> ErrorRenderer:
        for prefix, renderer in renderers:
            if request.path.startswith(prefix):
                return renderer
        return fallback

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = ensure_request_id(request)
        try:
            response = await handler(request)
        except BodyIncomplete as exc:
            # The client went away mid-body: nothing to report but the fact (499).
            log.info("request %s %s: client disconnected mid-body (499)", rid, request.path)
            response = pick(request)(request, exc)
        except Retryable as exc:
            response = pick(request)(request, exc)
            response.headers["Retry-After"] = str(exc.retry_after)
        except RegistryError as exc:
            response = pick(request)(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = pick(request)(request, exc)
        except _DATABASE_ERRORS as exc:
            # A connection lost or a statement timed out mid-request: the database's
            # fault, not the request's (connect failures already arrive as DatabaseUnavailable).
            OUTAGE.failed(exc)
            unavailable = DatabaseUnavailable()
            response = pick(request)(request, unavailable)
            response.headers["Retry-After"] = str(unavailable.retry_after)
        except Exception:
            log.exception("request %s %s %s failed", rid, request.method, request.path)
            response = web.json_response(
                {"error": f"Internal server error (request id {rid})"}, status=500
            )
        return response

    return middleware
