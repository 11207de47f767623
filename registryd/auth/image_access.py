"""Requests on ``/v1/images/<id>/...``: the rules of ``access/images.py`` applied to the caller.

Reads ask the per-process cache of access facts which repositories reference
the image; writes read them in the database, and hold an uploading image's id
for the repository that declared it.
"""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action, Caller, is_open, refuse
from registryd.access.images import ImageAccess
from registryd.auth.authorize import note_for_access_log
from registryd.auth.credentials import resolve_caller
from registryd.db import repository_queries, v1_image_queries
from registryd.domain.image_holders import hold_for_upload
from registryd.errors import AccessDenied, ImageHeldElsewhere, ImageNotDeclared
from registryd.keys import SERVICES
from registryd.names import ImageId


async def image_access(request: web.Request) -> ImageAccess:
    svc = request.config_dict[SERVICES]
    return ImageAccess(await resolve_caller(request, svc), svc.settings)


async def authorize_image_read(request: web.Request, image_id: ImageId) -> bool:
    """Allow a read of ``/v1/images/<id>/...`` (v1 spec §4.3) or raise; True when the
    image is public (anyone may read it), False when only some callers may.

    A repository that declared or tagged the image must be readable by the caller.
    """
    access = await image_access(request)
    caller = access.caller
    note_for_access_log(request, caller, None)
    if is_open(access.settings):
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
        return access.publicly_readable(referencing)
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
