"""The mirror's hook into the v2 API: it answers reads of mirrored repositories.

A middleware of the v2 sub-application, inside its error middleware, so the domain
errors it raises are rendered like any v2 handler's. Requests for local repositories
pass straight through; reads of mirrored manifests and blobs are answered from the
cache or the upstream; pushes into a mirrored namespace are refused (403 DENIED).
Everything else (tags list, referrers, deletes by an admin) goes to the usual
handler under the mirrored repository's local name.
"""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action
from registryd.db import repository_queries
from registryd.digest import Digest
from registryd.domain.manifests import parse_reference
from registryd.errors import AccessDenied, DigestInvalid, ManifestUnknown, TagNameInvalid
from registryd.http.middleware import Handler
from registryd.mirror import blobs, manifests
from registryd.mirror.errors import UpstreamError, render
from registryd.mirror.routing import NS_PARAMETER, Target, find_target, target_of
from registryd.mirror.service import MIRROR, Mirror
from registryd.v2.access import authorize
from registryd.v2.url_grammar import repository_name

_MANIFEST = "/v2/{name}/manifests/{reference}"
_BLOB = "/v2/{name}/blobs/{digest}"
_WRITES = frozenset({"POST", "PUT", "PATCH"})
_READS = frozenset({"GET", "HEAD"})


@web.middleware
async def mirror_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    mirror = request.config_dict.get(MIRROR)
    if mirror is None:
        return await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else ""
    target = find_target(request, mirror.upstreams)
    if target is None and route in (_MANIFEST, _BLOB) and request.method in _READS:
        target = await _unprefixed_target(request, mirror)
    if target is None:
        return await handler(request)
    try:
        if request.method in _WRITES:
            raise AccessDenied(
                f"{target.upstream.namespace} is a read-only mirror of {target.upstream.url}"
            )
        if route == _MANIFEST and request.method in _READS:
            return await _get_manifest(request, mirror, target)
        if route == _BLOB and request.method in _READS:
            digest = Digest.parse(request.match_info["digest"])
            await authorize(request, Action.READ, target.local)
            return await blobs.get_blob(request, mirror, target, digest)
    except UpstreamError as exc:
        return render(exc)
    return await handler(request)


async def _unprefixed_target(request: web.Request, mirror: Mirror) -> Target | None:
    """docker's ``registry-mirrors`` names no namespace: a name no local repository has
    goes to the upstream that serves unprefixed names, if one does."""
    upstream = mirror.unprefixed
    if upstream is None or NS_PARAMETER in request.query:
        return None
    local = repository_name(request)
    async with mirror.svc.pool.acquire() as conn:
        if await repository_queries.fetch_repository(conn, local) is not None:
            return None  # local repositories come first
    return target_of(upstream, request.match_info["name"])


async def _get_manifest(request: web.Request, mirror: Mirror, target: Target) -> web.Response:
    text = request.match_info["reference"]
    try:
        reference = parse_reference(text)
    except (TagNameInvalid, DigestInvalid):
        raise ManifestUnknown(text) from None
    await authorize(request, Action.READ, target.local)
    manifest = await manifests.get_manifest(mirror, target, reference)
    mirror.pulls.record(target.local, manifest.digest)
    etag = f'"{manifest.digest}"'
    headers = {"Docker-Content-Digest": str(manifest.digest), "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = manifest.media_type
    return web.Response(body=manifest.body, headers=headers)
