"""v1 response conventions (v1 spec §2): JSON bodies and cache headers."""

from __future__ import annotations

import functools
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from aiohttp import web

NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "-1"}
_ONE_YEAR = timedelta(days=365)


@functools.lru_cache(maxsize=2)
def _expires(second: int) -> str:
    # Formatting a date costs more than the rest of a layer GET's headers: once a second.
    return format_datetime(datetime.fromtimestamp(second, UTC) + _ONE_YEAR, usegmt=True)


def immutable_headers(public: bool) -> dict[str, str]:
    """Headers for reads of complete images, which never change.

    Only what anyone may read is marked ``public``: content behind credentials
    must never be handed out by a shared cache to someone else.
    """
    return {
        "Cache-Control": ("public" if public else "private") + ", max-age=31536000",
        "Expires": _expires(int(time.time())),
        "Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT",
    }


def not_modified(request: web.Request, public: bool) -> web.Response | None:
    """304 for any conditional read of immutable content, as the v1 registries did."""
    if "If-Modified-Since" in request.headers or "If-None-Match" in request.headers:
        return web.Response(status=304, headers=immutable_headers(public))
    return None


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        content_type="application/json",
        headers=NO_CACHE if headers is None else headers,
    )


def raw_json_response(body: bytes, headers: dict[str, str]) -> web.Response:
    """Stored JSON served byte for byte: checksums are computed over these bytes."""
    return web.Response(body=body, content_type="application/json", headers=headers)
