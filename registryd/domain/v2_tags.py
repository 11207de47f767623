"""v2 tags as a list (spec end-8a); tags are written with their manifest (manifests.py)."""

from __future__ import annotations

from registryd.db import v2_tag_queries
from registryd.domain import repositories
from registryd.domain.services import Services
from registryd.domain.v2_paging import Page
from registryd.errors import RepositoryUnknown
from registryd.names import RepositoryName


async def list_tags(svc: Services, name: RepositoryName, last: str | None, limit: int) -> Page:
    """Tags after ``last`` in byte order, at most ``limit``; raise RepositoryUnknown."""
    repo = await repositories.resolve(svc, name)
    if repo is None:
        raise RepositoryUnknown()
    async with svc.pool.acquire() as conn:
        tags = await v2_tag_queries.fetch_v2_tags_page(conn, repo.repository_id, last, limit + 1)
    return Page(tags[:limit], len(tags) > limit)
