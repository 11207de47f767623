"""``/v2/<name>/blobs/<digest>``: GET/HEAD with Range, DELETE (spec end-2, end-10)."""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action
from registryd.domain import blobs, repositories
from registryd.http.streaming import RangeNotSatisfiable, parse_range, send_blob
from registryd.keys import SERVICES
from registryd.v2.access import authorize
from registryd.v2.url_grammar import path_digest, repository_name

# How long a blob GET's redirect URL stays valid (distribution's is 20 minutes).
REDIRECT_SECONDS = 20 * 60


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repository_name(request)
    digest = path_digest(request)
    await authorize(request, Action.READ, name)
    svc = request.config_dict[SERVICES]
    # The client reads from the object store (Range included), as distribution's
    # redirects do; the access check above ran first. A HEAD never redirects.
    redirect_seconds = REDIRECT_SECONDS if request.method == "GET" else None
    if (
        redirect_seconds is not None
        and "Range" in request.headers
        and not _satisfiable(request, await blobs.blob_size(svc, name, digest))
    ):
        redirect_seconds = None  # answered 416 here (a resume's Range only)
    found = await blobs.open_or_redirect(svc, name, digest, redirect_seconds)
    if isinstance(found, str):
        return web.Response(
            status=307,
            headers={
                "Location": found,
                "Docker-Content-Digest": str(digest),
                # The URL expires: no cache may keep this answer.
                "Cache-Control": "no-store",
            },
        )
    try:
        public = await repositories.publicly_readable(svc, name)
    except BaseException:
        await found.close()
        raise
    text = str(digest)
    headers = {
        "Docker-Content-Digest": text,
        "ETag": f'"{text}"',
        # Content-addressed: the bytes at this URL never change. Shared caches
        # must not hand content behind credentials to others.
        "Cache-Control": _PUBLIC if public else _PRIVATE,
    }
    return await send_blob(request, found, headers, zero_copy=svc.settings.sendfile)


_PUBLIC = "max-age=31536000"
_PRIVATE = "private, max-age=31536000"


def _satisfiable(request: web.Request, size: int) -> bool:
    """False for a Range that selects nothing: it is answered 416 here, where a
    bucket may ignore it (moto and S3 answer "bytes=500-0" with the whole blob)."""
    try:
        parse_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable:
        return False
    return True


async def delete_blob(request: web.Request) -> web.Response:
    name = repository_name(request)
    digest = path_digest(request)
    await authorize(request, Action.DELETE, name)
    await blobs.delete_blob(request.config_dict[SERVICES], name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})
