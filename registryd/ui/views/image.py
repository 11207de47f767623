"""An image: a v2 manifest (image or index) with its config and referrers, or a v1 image
with its ancestry. Only within a repository the viewer may read."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiohttp import web

from registryd.access.decision import Action
from registryd.db import blob_queries, manifest_queries, ui_queries
from registryd.digest import Digest
from registryd.domain.manifests import INDEX_TYPES
from registryd.domain.services import Services
from registryd.errors import BlobUnknown, ImageIdInvalid
from registryd.keys import SERVICES
from registryd.names import parse_image_id
from registryd.storage.base import read_bytes
from registryd.ui import display, session
from registryd.ui.access import NotFound, allows, readable_repository
from registryd.ui.render import page
from registryd.ui.views.repository import registry_host

# Configs larger than this are not read for display (real ones are a few KiB).
MAX_CONFIG_BYTES = 1024 * 1024


async def _read_blob(svc: Services, digest: Digest, size: int) -> bytes | None:
    """A small blob's bytes, or None if it is missing or too large."""
    if size > MAX_CONFIG_BYTES:
        return None
    try:
        blob = await svc.storage.open(digest)
    except BlobUnknown:
        return None
    try:
        return await read_bytes(blob, 0, min(blob.size_bytes, size))
    finally:
        await blob.close()


async def manifest(request: web.Request) -> web.Response:
    identity = await session.viewer(request)
    svc = request.config_dict[SERVICES]
    digest = Digest.parse(request.match_info["digest"])
    async with svc.pool.acquire() as conn:
        repo = await readable_repository(request, conn, identity, request.match_info["name"])
        detail = await ui_queries.fetch_manifest_detail(conn, repo.repository_id, str(digest))
        if detail is None:
            raise NotFound()
        referrers = await manifest_queries.fetch_referrers(conn, repo.repository_id, digest, None)
        body = display.loads_object(detail.body)
        found = display.descriptors([body.get("config")])
        config_descriptor = found[0] if found else None
        # Only a blob of this repository: its bytes may exist through another one alone.
        config_size = (
            await blob_queries.fetch_repository_blob_size(
                conn, repo.repository_id, Digest.parse(config_descriptor.digest)
            )
            if config_descriptor is not None and detail.media_type not in INDEX_TYPES
            else None
        )
    by_type: dict[str, list[Any]] = defaultdict(list)
    for referrer in referrers:
        by_type[referrer.artifact_type or referrer.media_type].append(
            (referrer, display.string_map(referrer.annotations))
        )
    config = None
    layers: list[display.Descriptor] = []
    platforms: list[display.Descriptor] = []
    if detail.media_type in INDEX_TYPES:
        platforms = display.index_platforms(body)
        config_descriptor = None
    else:
        layers = display.descriptors(body.get("layers"))
        if config_descriptor is not None and config_size is not None:
            raw = await _read_blob(svc, Digest.parse(config_descriptor.digest), config_size)
            if raw is not None:
                config = display.image_config(display.loads_object(raw))
    name = repo.name.for_oci()
    return await page(
        request,
        "image.html",
        identity=identity,
        repo=repo,
        name=name,
        detail=detail,
        manifest_annotations=display.string_map(body.get("annotations")),
        config=config,
        config_descriptor=config_descriptor,
        layers=layers,
        layers_size=sum(layer.size or 0 for layer in layers),
        platforms=platforms,
        referrers=sorted(by_type.items()),
        commands=display.pull_commands(
            registry_host(request), name, detail.digest, plain_http=not request.secure, v2=True
        ),
        may_delete=allows(request, identity, repo, Action.DELETE),
    )


async def v1_image(request: web.Request) -> web.Response:
    identity = await session.viewer(request)
    try:
        image_id = parse_image_id(request.match_info["image_id"])
    except ImageIdInvalid:
        raise NotFound() from None
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        repo = await readable_repository(request, conn, identity, request.match_info["name"])
        ancestry = await ui_queries.fetch_v1_ancestry(conn, repo.repository_id, image_id)
    if ancestry is None:
        raise NotFound()
    image = ancestry[0]
    data = display.loads_object(image.json)
    return await page(
        request,
        "v1image.html",
        identity=identity,
        repo=repo,
        image=image,
        config=display.image_config(data),
        comment=data.get("comment") if isinstance(data.get("comment"), str) else None,
        ancestry=ancestry,
        total_size=sum(a.size_bytes or 0 for a in ancestry),
    )
