"""Access to v1 images, whose ids are global, chosen by clients, and named by no repository.

An image is readable through the repositories that declare or tag it, and
declaring or tagging an existing image needs read access to it, so no
repository can make another's private image readable. While an image is
uploading, only writers of the repository holding its id (the first to declare
or upload it, ``v1_image_owners``) may write it; a complete image is immutable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from registryd.auth.credentials import Caller, resolve_caller
from registryd.auth.policy import TOKEN_ALLOWS, Action, may, note_for_access_log, refuse
from registryd.config import Settings
from registryd.db import image_owner_queries, repository_queries, v1_image_queries
from registryd.db.conn import Conn
from registryd.db.repository_queries import RepositoryRow
from registryd.errors import AccessDenied, ImageHeldElsewhere, ImageNotDeclared
from registryd.keys import SERVICES
from registryd.names import ImageId, RepositoryName


@dataclass(frozen=True)
class ImageAccess:
    """What one caller may do with images, given the repositories that reference them."""

    caller: Caller
    settings: Settings

    @property
    def unrestricted(self) -> bool:
        """No checks at all: open mode, or an admin signed in with a password."""
        return self.settings.auth_mode == "none" or self.caller.identity.is_admin

    def token_allows(self, action: Action) -> bool:
        return any(action in TOKEN_ALLOWS[g.access] for g in self.caller.grants)

    def may_write(self, repository: RepositoryName) -> bool:
        if self.unrestricted:
            return True
        if self.caller.via_token:
            return any(
                g.repository == repository and Action.WRITE in TOKEN_ALLOWS[g.access]
                for g in self.caller.grants
            )
        return may(self.caller.identity, repository, True, Action.WRITE, self.settings)

    def may_read(self, referencing: Iterable[RepositoryRow]) -> bool:
        """Whether one of the repositories declaring or tagging an image lets the caller read."""
        if self.unrestricted:
            return True
        if self.caller.via_token:
            granted = {
                g.repository for g in self.caller.grants if Action.READ in TOKEN_ALLOWS[g.access]
            }
            return bool(granted) and any(r.name in granted or r.is_public for r in referencing)
        return any(
            may(self.caller.identity, r.name, r.is_public, Action.READ, self.settings)
            for r in referencing
        )


async def image_access(request: web.Request) -> ImageAccess:
    svc = request.config_dict[SERVICES]
    return ImageAccess(await resolve_caller(request, svc), svc.settings)


async def may_reuse(
    conn: Conn, access: ImageAccess, image_id: ImageId, into: RepositoryName | None = None
) -> bool:
    """Whether the caller may build on, declare or tag ``image_id`` (in ``into``).

    Yes when a repository referencing it is ``into`` or readable by the caller,
    or when the caller may write the repository holding its id (what one uploaded
    stays reusable after its repository is deleted).
    """
    if access.unrestricted:
        return True
    found = await repository_queries.fetch_repositories_referencing(conn, image_id)
    if any(repo.name == into for repo, _ in found) or access.may_read(repo for repo, _ in found):
        return True
    owner = await image_owner_queries.fetch_image_owner(conn, image_id)
    return owner is not None and access.may_write(owner)


async def hold_for_upload(
    conn: Conn, access: ImageAccess, image_id: ImageId, repository: RepositoryName
) -> bool:
    """Make ``repository`` the holder of a not yet complete image, if the caller may.

    The first repository to claim an id holds it; a caller who may write the
    current holder moves it here (docker pushing the same new layer to a second
    repository of its user). False when another repository holds it.
    """
    await image_owner_queries.claim_image_owner(conn, image_id, repository)
    owner = await image_owner_queries.fetch_image_owner(conn, image_id)
    if owner is None or owner == repository:
        return True
    if access.may_write(owner):
        await image_owner_queries.move_image_owner(conn, image_id, repository)
        return True
    return False


def _publicly_readable(settings: Settings, referencing: Iterable[RepositoryRow]) -> bool:
    """Whether anyone at all may read the image (so shared caches may keep it)."""
    return settings.anonymous_pull and any(repo.is_public for repo in referencing)


async def authorize_image_read(request: web.Request, image_id: ImageId) -> bool:
    """Allow a read of ``/v1/images/<id>/...`` (v1 spec §4.3) or raise; True when the
    image is public (anyone may read it), False when only some callers may.

    A repository that declared or tagged the image must be readable by the caller.
    """
    access = await image_access(request)
    caller = access.caller
    note_for_access_log(request, caller, None)
    if access.settings.auth_mode == "none":
        return True
    if caller.via_token and not access.token_allows(Action.READ):
        raise AccessDenied("Token does not grant read access")
    svc = request.config_dict[SERVICES]
    if svc.access is not None:  # reads may use the per-process cache; writes never do
        found = await svc.access.image_references(image_id)
    else:
        async with svc.pool.acquire() as conn:
            found = await repository_queries.fetch_repositories_referencing(conn, image_id)
    referencing = [repo for repo, _ in found]
    if access.may_read(referencing):
        return _publicly_readable(access.settings, referencing)
    if caller.via_token:
        raise AccessDenied("Image is not part of the token's repository")
    raise refuse(caller, "No read access to this image")


async def authorize_image_write(request: web.Request, image_id: ImageId) -> Caller:
    """Allow a write to ``/v1/images/<id>/...`` or raise.

    The caller must be allowed to write a repository whose index list declared
    the image and, unless the image is complete (the domain then answers
    "already exists"), the repository holding its id.
    """
    access = await image_access(request)
    caller = access.caller
    note_for_access_log(request, caller, None)
    if access.unrestricted:
        return caller
    if caller.via_token and not access.token_allows(Action.WRITE):
        raise AccessDenied("Token does not grant write access")
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        found = await repository_queries.fetch_repositories_referencing(conn, image_id)
        writable = [repo for repo, declared in found if declared and access.may_write(repo.name)]
        if not writable:
            if caller.via_token:
                raise ImageNotDeclared()
            raise refuse(caller, "No write access to this image")
        image = await v1_image_queries.fetch_image(conn, image_id)
        if image is not None and image.is_complete:
            return caller
        async with conn.transaction():
            if not await hold_for_upload(conn, access, image_id, writable[0].name):
                raise ImageHeldElsewhere(image_id)
    return caller
