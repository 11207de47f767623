"""v1 tags (v2 tags: v2_tags.py): names in a repository pointing at complete images
(v1 spec §5.8)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from registryd import jsonbody
from registryd.access.images import ImageAccess
from registryd.db import gc_holds, repository_queries, v1_image_queries, v1_tag_queries
from registryd.domain.image_holders import may_reuse
from registryd.domain.services import Services
from registryd.errors import (
    AccessDenied,
    ImageBeingUploaded,
    ImageIdInvalid,
    ImageUnknown,
    RepositoryUnknown,
    TagBodyInvalid,
    TagUnknown,
)
from registryd.names import ImageId, RepositoryName, parse_image_id

# docker's User-Agent: "docker/1.9.1 go/go1.4.3 git-commit/a34a1d5 kernel/4.1 os/linux arch/amd64"
_USER_AGENT_PART_RE = re.compile(r"([a-z-]+)/([^\s]+)")
_USER_AGENT_KEYS = {
    "docker": "docker_version",
    "go": "docker_go_version",
    "kernel": "kernel",
    "os": "os",
    "arch": "arch",
}


def tag_metadata(user_agent: str) -> dict[str, Any]:
    """The per-tag metadata docker-registry kept: last update and the client's versions."""
    meta: dict[str, Any] = {v: None for v in _USER_AGENT_KEYS.values()}
    for key, value in _USER_AGENT_PART_RE.findall(user_agent):
        # Header bytes that are not UTF-8 arrive as lone surrogates, which jsonb refuses.
        if key in _USER_AGENT_KEYS and jsonbody.storable_text(value):
            meta[_USER_AGENT_KEYS[key]] = value
    meta["last_update"] = int(datetime.now(UTC).timestamp())
    return meta


def parse_tag_body(body: bytes) -> str:
    """A tag PUT body is a JSON string holding the image id; raise TagBodyInvalid."""
    value = jsonbody.parse_or_raise(body, lambda _reason: TagBodyInvalid())
    if not isinstance(value, str):
        raise TagBodyInvalid()
    return value


async def list_tags(svc: Services, name: RepositoryName) -> dict[str, ImageId]:
    async with svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, name)
        if repo is None:
            raise RepositoryUnknown()
        return await v1_tag_queries.fetch_v1_tags(conn, repo.repository_id)


async def get_tag(svc: Services, name: RepositoryName, tag: str) -> ImageId:
    async with svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, name)
        if repo is None:
            raise RepositoryUnknown()
        image_id = await v1_tag_queries.fetch_v1_tag(conn, repo.repository_id, tag)
    if image_id is None:
        raise TagUnknown(tag)
    return image_id


async def put_tag(
    svc: Services,
    name: RepositoryName,
    tag: str,
    body: bytes,
    user_agent: str,
    access: ImageAccess,
) -> None:
    """Point ``tag`` at a complete image the caller may read, creating the repository if needed.

    Raises TagBodyInvalid, ImageUnknown, ImageBeingUploaded, AccessDenied.
    """
    try:
        image_id = parse_image_id(parse_tag_body(body))
    except ImageIdInvalid:
        raise ImageUnknown() from None
    async with svc.pool.acquire() as conn, conn.transaction():
        # Held until the tag is in: garbage collection either deleted the image first
        # (then it is unknown here) or leaves it alone.
        held = await gc_holds.hold_v1_image(conn, image_id)
        image = await v1_image_queries.fetch_image(conn, image_id) if held else None
        if image is None:
            raise ImageUnknown()
        if not image.is_complete:
            raise ImageBeingUploaded()
        if not await may_reuse(conn, access, image_id, name):
            # Else tagging would make another repository's private image readable here.
            raise AccessDenied(f"Image {image_id} is in no repository you may read")
        repo = await repository_queries.ensure_repository(conn, name)
        await v1_tag_queries.upsert_v1_tag(
            conn, repo.repository_id, tag, image_id, tag_metadata(user_agent)
        )


async def delete_tag(svc: Services, name: RepositoryName, tag: str) -> None:
    async with svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, name)
        if repo is None or not await v1_tag_queries.delete_v1_tag(conn, repo.repository_id, tag):
            raise TagUnknown(tag)
