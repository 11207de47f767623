"""The v2 URL grammar: what a v2 path says (name, digest, reference), and the URLs
we hand back in ``Location``.

Locations are relative (``/v2/...``): every client we target resolves them
against the request URL, so they stay right behind proxies and port mappings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

from aiohttp import web

from registryd.digest import Digest
from registryd.names import RepositoryName

API_VERSION_HEADER = "Docker-Distribution-API-Version"
API_VERSION = "registry/2.0"


# Parsed path parts by their text: pulls name the same few repositories and digests
# again and again, and both are immutable values. Bounded (emptied when full), so
# that a client sending endless distinct names costs no memory; refusals are not kept.
PARSED_CACHE_ENTRIES = 4096
_T = TypeVar("_T")
_names: dict[str, RepositoryName] = {}
_digests: dict[str, Digest] = {}


def _parsed(cache: dict[str, _T], text: str, parse: Callable[[str], _T]) -> _T:
    """``parse(text)``, kept by its text (a refusal raises and is not kept)."""
    if (value := cache.get(text)) is None:
        value = parse(text)
        if len(cache) >= PARSED_CACHE_ENTRIES:
            cache.clear()
        cache[text] = value
    return value


def repository_name(request: web.Request) -> RepositoryName:
    """The ``<name>`` of the path; raise RepositoryNameInvalid (400, never a path)."""
    return _parsed(_names, request.match_info["name"], RepositoryName.parse_oci)


def path_digest(request: web.Request) -> Digest:
    """The ``<digest>`` of the path; raise DigestInvalid."""
    return _parsed(_digests, request.match_info["digest"], Digest.parse)


def blob_url(request: web.Request, digest: Digest) -> str:
    return f"/v2/{request.match_info['name']}/blobs/{digest}"


def upload_url(request: web.Request, upload_id: str) -> str:
    return f"/v2/{request.match_info['name']}/blobs/uploads/{upload_id}"


def manifest_url(request: web.Request, digest: Digest) -> str:
    return f"/v2/{request.match_info['name']}/manifests/{digest}"


def next_link(path: str, **query: str | int) -> str:
    """An RFC 8288 ``Link`` to the next page, as clients follow it (path and query only)."""
    params = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items())
    return f'<{path}?{params}>; rel="next"'


async def add_api_version(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` of the v2 sub-app: every v2 answer names the API version, as
    distribution does."""
    del request
    response.headers[API_VERSION_HEADER] = API_VERSION
