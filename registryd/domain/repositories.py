"""The index side of repositories (v1 spec §5.9-§5.15): declared image lists, deletion,
visibility and search. Permission checks happen before these are called."""

from __future__ import annotations

from typing import Any

from registryd import jsonbody
from registryd.access.decision import is_open, sees_everything
from registryd.access.decision import publicly_readable as readable_by_anyone
from registryd.access.identity import Identity
from registryd.access.images import ImageAccess
from registryd.db import image_owner_queries as owners
from registryd.db import repository_queries, user_queries
from registryd.db.conn import Conn
from registryd.db.repository_queries import RepositoryRow
from registryd.domain.image_holders import may_reuse
from registryd.domain.services import Services
from registryd.errors import (
    AccessDenied,
    ImageHeldElsewhere,
    ImageIdInvalid,
    RepositoryUnknown,
    RequestInvalid,
)
from registryd.names import LIBRARY_NAMESPACE, ImageId, RepositoryName, parse_image_id

SEARCH_DEFAULT_PAGE_SIZE = 25
SEARCH_MAX_PAGE_SIZE = 100


def _parse(body: bytes) -> Any:
    return jsonbody.parse_or_raise(body, RequestInvalid, syntax_reason="Error Decoding JSON")


def parse_image_list(body: bytes) -> list[tuple[str, str | None]]:
    """(id, checksum) pairs from a JSON array of ``{"id", "checksum"?}``; an empty body is []."""
    if not body.strip():
        return []
    data = _parse(body)
    if not isinstance(data, list):
        raise RequestInvalid("Invalid data: expected a JSON array of images")
    images: list[tuple[str, str | None]] = []
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise RequestInvalid('Invalid data: every image needs an "id"')
        checksum = entry.get("checksum")
        if checksum is not None and not isinstance(checksum, str):
            raise RequestInvalid("Invalid data: checksum must be a string")
        try:
            images.append((parse_image_id(entry["id"]), checksum or None))
        except ImageIdInvalid:
            raise RequestInvalid(f"Invalid image id {entry['id']!r}") from None
    return images


async def _admit(
    conn: Conn, repo: RepositoryRow, images: list[tuple[str, str | None]], access: ImageAccess
) -> None:
    """Refuse images the caller may not put in ``repo``; hold the ones still to upload.

    A complete image must be readable by the caller (else declaring it would make
    another repository's private image readable here). An image not complete, or
    not yet pushed at all, is held for ``repo``: from now on only writers of the
    repository holding it may upload it (docker declares ids before uploading them,
    and the declared list of a public repository is readable by anyone).
    """
    if is_open(access.settings):
        return
    # Sorted: concurrent declarations then claim ids in one order and cannot deadlock.
    ids = sorted({ImageId(image_id) for image_id, _ in images})
    complete = await owners.fetch_complete_images(conn, ids)
    pending = [i for i in ids if i not in complete]
    if pending:
        await owners.claim_image_owners(conn, pending, repo.name)
        held = await owners.fetch_image_owners(conn, pending)
        elsewhere = [i for i in pending if i in held and held[i] != repo.name]
        movable = [i for i in elsewhere if access.may_write(held[i])]
        if movable:  # the caller may write both repositories: the upload moves here
            await owners.move_image_owners(conn, movable, repo.name)
        refused = [i for i in elsewhere if i not in movable]
        if refused:
            completed = await owners.fetch_complete_images(conn, refused)  # meanwhile?
            for image_id in refused:
                if image_id not in completed:
                    raise ImageHeldElsewhere(image_id)
            complete |= completed
    if complete:
        here = await owners.fetch_referenced_in(conn, repo.repository_id, sorted(complete))
        for image_id in sorted(complete - here):
            if not await may_reuse(conn, access, image_id, repo.name):
                raise AccessDenied(f"Image {image_id} is in no repository you may read")


async def declare(svc: Services, name: RepositoryName, body: bytes, access: ImageAccess) -> None:
    """PUT /v1/repositories/<name>/: create the repository if needed and add the images."""
    images = parse_image_list(body)
    creator = access.caller.identity
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await user_queries.fetch_user(conn, creator.username) if creator.username else None
        repo = await repository_queries.insert_repository(
            conn, name, user.user_id if user else None
        )
        if repo is None:
            repo = await repository_queries.ensure_repository(conn, name)
        await _admit(conn, repo, images, access)
        await repository_queries.declare_images(conn, repo.repository_id, images)


async def fetch(svc: Services, name: RepositoryName) -> RepositoryRow:
    async with svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, name)
    if repo is None:
        raise RepositoryUnknown()
    return repo


async def resolve(svc: Services, name: RepositoryName) -> RepositoryRow | None:
    """The repository's row for a read, or None: from the per-process cache of access
    facts when it is on (emptied by NOTIFY when the row changes), else from PostgreSQL.

    Writes must not use it: they read the row in their own transaction.
    """
    if svc.access is not None:
        return await svc.access.repository(name)
    async with svc.pool.acquire() as conn:
        return await repository_queries.fetch_repository(conn, name)


async def publicly_readable(svc: Services, name: RepositoryName) -> bool:
    """Whether anyone at all may read the repository, so shared caches may keep its content."""
    if is_open(svc.settings) or not svc.settings.anonymous_pull:
        return readable_by_anyone(svc.settings, False)
    repo = await resolve(svc, name)
    return repo is not None and readable_by_anyone(svc.settings, repo.is_public)


async def add_images(svc: Services, name: RepositoryName, body: bytes, access: ImageAccess) -> None:
    """PUT /v1/repositories/<name>/images: merge ids and checksums; the list never shrinks."""
    images = parse_image_list(body)
    repo = await fetch(svc, name)
    async with svc.pool.acquire() as conn, conn.transaction():
        await _admit(conn, repo, images, access)
        await repository_queries.declare_images(conn, repo.repository_id, images)


async def list_images(svc: Services, name: RepositoryName) -> list[dict[str, str]]:
    repo = await fetch(svc, name)
    async with svc.pool.acquire() as conn:
        declared = await repository_queries.fetch_declared_images(conn, repo.repository_id)
    return [
        {"id": image_id, "checksum": checksum} if checksum else {"id": image_id}
        for image_id, checksum in declared
    ]


async def delete(svc: Services, name: RepositoryName) -> None:
    repo = await fetch(svc, name)
    async with svc.pool.acquire() as conn:
        await repository_queries.delete_repository(conn, repo.repository_id)


def parse_properties(body: bytes) -> bool:
    """``{"access": "private"|"public"}`` -> is_public."""
    data = _parse(body)
    if not isinstance(data, dict) or data.get("access") not in ("private", "public"):
        raise RequestInvalid('Expected {"access": "private"} or {"access": "public"}')
    return bool(data["access"] == "public")


async def set_public(svc: Services, name: RepositoryName, is_public: bool) -> None:
    repo = await fetch(svc, name)
    async with svc.pool.acquire() as conn:
        await repository_queries.set_repository_public(conn, repo.repository_id, is_public)


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RequestInvalid(f"Query parameter {key} must be an integer") from None


async def search(svc: Services, params: dict[str, str], viewer: Identity) -> dict[str, Any]:
    """GET /v1/search (§5.15): a page of the repositories matching ``q`` the viewer may see."""
    term = params.get("q", "")
    if not jsonbody.storable_text(term):
        raise RequestInvalid("Query parameter q must not contain NUL")
    page_size = min(max(_int_param(params, "n", SEARCH_DEFAULT_PAGE_SIZE), 1), SEARCH_MAX_PAGE_SIZE)
    page = min(max(_int_param(params, "page", 1), 1), 1_000_000)
    everything = sees_everything(viewer, svc.settings)
    include_public = not viewer.is_anonymous or svc.settings.anonymous_pull
    async with svc.pool.acquire() as conn:
        total, repos = await repository_queries.search_repositories(
            conn,
            term,
            viewer.username,
            everything,
            include_public,
            page_size,
            (page - 1) * page_size,
        )
    results = [
        {
            "name": str(repo.name),
            "description": repo.description,
            "star_count": 0,
            "is_official": repo.name.namespace == LIBRARY_NAMESPACE,
            "is_trusted": False,
            "is_automated": False,
        }
        for repo in repos
    ]
    return {
        "query": term,
        "num_results": len(results),
        "num_pages": max(1, -(-total // page_size)),
        "page": page,
        "page_size": page_size,
        "results": results,
    }
