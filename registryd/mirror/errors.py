"""What can go wrong between the mirror and an upstream, in the v2 error format.

Rendered by the mirror middleware (``render``), since only mirrored requests
raise them: 503 when the upstream cannot be reached or fails, 502 when it
answers something we cannot use, 403 when it refuses our credentials.
"""

from __future__ import annotations

from aiohttp import web

from registryd.errors import RegistryError
from registryd.v2.errors import error_response


class UpstreamError(RegistryError):
    """Base of the mirror's upstream failures; ``reason`` is shown to the client."""

    status = 502
    code = "UNKNOWN"
    message = "upstream registry error"

    def __init__(self, upstream: str, reason: str) -> None:
        super().__init__(f"{upstream}: {reason}")
        self.upstream = upstream
        self.reason = reason


class UpstreamUnavailable(UpstreamError):
    """Unreachable, timed out, 5xx or rate-limited: maybe later."""

    status = 503
    code = "UNAVAILABLE"
    message = "upstream registry unavailable and the content is not cached"


class UpstreamInvalid(UpstreamError):
    """An answer we cannot use: wrong digest, a manifest we cannot store, a short body."""

    message = "upstream registry sent an unusable answer"


class UpstreamDenied(UpstreamError):
    """The upstream refused (our credentials, or anonymous access)."""

    status = 403
    code = "DENIED"
    message = "upstream registry denied access"


def render(exc: UpstreamError) -> web.Response:
    detail = {"upstream": exc.upstream, "reason": exc.reason}
    headers = {"Retry-After": "10"} if exc.status == 503 else None
    return error_response(exc.status, exc.code, exc.message, detail, headers)
