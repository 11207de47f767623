"""Who may build on a v1 image id and which repository holds an id still uploading
(``v1_image_owners``); the rules are ``access/images.py``'s, the facts read here."""

from __future__ import annotations

from registryd.access.images import ImageAccess
from registryd.db import image_owner_queries, repository_queries
from registryd.db.conn import Conn
from registryd.names import ImageId, RepositoryName


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
