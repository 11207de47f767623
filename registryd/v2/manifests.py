"""``/v2/<name>/manifests/<reference>``: GET/HEAD, PUT, DELETE by tag or digest
(spec end-3, end-7, end-9)."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from registryd.access.decision import Action
from registryd.domain import manifests, repositories
from registryd.errors import DigestInvalid, ManifestUnknown, TagNameInvalid
from registryd.http.streaming import read_body
from registryd.keys import SERVICES
from registryd.names import parse_tag
from registryd.v2.access import authorize
from registryd.v2.url_grammar import manifest_url, repository_name


def _readable_reference(text: str) -> manifests.Reference:
    """A GET/HEAD reference: one that can name no manifest is unknown (404), not invalid.

    The spec's only failure for end-3 is 404 MANIFEST_UNKNOWN; TAG_INVALID is a
    legacy code it does not list.
    """
    try:
        return manifests.parse_reference(text)
    except (TagNameInvalid, DigestInvalid):
        raise ManifestUnknown(text) from None


async def get_manifest(request: web.Request) -> web.Response:
    """The stored bytes with their own media type; HEAD shares it (aiohttp drops the body)."""
    name = repository_name(request)
    reference = _readable_reference(request.match_info["reference"])
    await authorize(request, Action.READ, name)
    svc = request.config_dict[SERVICES]
    manifest = await manifests.get_manifest(svc, name, reference)
    etag = f'"{manifest.digest}"'
    headers = {"Docker-Content-Digest": str(manifest.digest), "ETag": etag}
    if not await repositories.publicly_readable(svc, name):
        headers["Cache-Control"] = "private"  # never kept by shared caches
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    # Content-Type decides the client's parser: exactly the stored media type.
    headers["Content-Type"] = manifest.media_type
    return web.Response(body=manifest.body, headers=headers)


async def put_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    reference = manifests.parse_reference(request.match_info["reference"])
    # Next spec version (end-7b): "?tag=a&tag=b" tags the manifest pushed by digest
    # in the same request; each tag applied is echoed in an OCI-Tag header.
    tags = [parse_tag(text) for text in request.query.getall("tag", [])]
    await authorize(request, Action.WRITE, name)
    body = await read_body(request, manifests.MAX_MANIFEST_BYTES)
    digest, parsed = await manifests.put_manifest(
        request.config_dict[SERVICES],
        name,
        reference,
        body,
        request.headers.get("Content-Type"),
        tags,
    )
    headers = CIMultiDict(
        {"Location": manifest_url(request, digest), "Docker-Content-Digest": str(digest)}
    )
    if parsed.subject is not None:
        # We keep the referrers index: clients need not maintain the fallback tag.
        headers["OCI-Subject"] = str(parsed.subject)
    for tag in dict.fromkeys(tags):
        headers.add("OCI-Tag", tag)
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    name = repository_name(request)
    reference = manifests.parse_reference(request.match_info["reference"])
    await authorize(request, Action.DELETE, name)
    await manifests.delete_manifest(request.config_dict[SERVICES], name, reference)
    return web.Response(status=202)
