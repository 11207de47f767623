"""The v2 catalog (``/v2/_catalog``, spec end-8b): repository names a caller may see."""

from __future__ import annotations

from collections.abc import Callable

from registryd.db import repository_queries
from registryd.db.repository_queries import RepositoryRow
from registryd.domain.services import Services
from registryd.domain.v2_paging import Page


async def list_repositories(
    svc: Services, last: str | None, limit: int, visible: Callable[[RepositoryRow], bool]
) -> Page:
    """Names of ``visible`` repositories after ``last`` in byte order, at most ``limit``.

    Invisible ones are skipped, so a page may be shorter; ``more`` still tells.
    """
    async with svc.pool.acquire() as conn:
        rows = await repository_queries.fetch_repositories_page(conn, last, limit + 1)
    page = rows[:limit]
    names = [str(row.name) for row in page if visible(row)]
    return Page(names, len(rows) > limit, str(page[-1].name) if page else None)
