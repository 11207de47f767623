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
    if (
        request.method == "GET"
        and (redirect := await blobs.blob_redirect(svc, name, digest, REDIRECT_SECONDS))
        and _satisfiable(request, redirect[1])
    ):
        # The client reads from the object store (Range included), as distribution's
        # redirects do; the access check above ran first. A HEAD never redirects.
        url = redirect[0]
        return web.Response(
            status=307,
            headers={
                "Location": url,
                "Docker-Content-Digest": str(digest),
                # The URL expires: no cache may keep this answer.
                "Cache-Control": "no-store",
            },
        )
    blob = await blobs.open_blob(svc, name, digest)
    public = await repositories.publicly_readable(svc, name)
    headers = {
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        # Content-addressed: the bytes at this URL never change. Shared caches
        # must not hand content behind credentials to others.
        "Cache-Control": "max-age=31536000" if public else "private, max-age=31536000",
    }
    return await send_blob(
        request, blob, headers, zero_copy=request.config_dict[SERVICES].settings.sendfile
    )


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
