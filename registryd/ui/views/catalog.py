"""The catalog: every repository the viewer may read, searchable; and "my repositories"."""

from __future__ import annotations

from aiohttp import web

from registryd.db import ui_queries
from registryd.errors import Unauthenticated
from registryd.keys import SERVICES
from registryd.ui import session
from registryd.ui.access import catalog_viewer
from registryd.ui.paging import Paging, pager, term
from registryd.ui.render import page


async def _listing(request: web.Request, *, mine: bool) -> web.Response:
    identity = await session.viewer(request)
    if mine and identity.username is None:
        raise Unauthenticated("Sign in to see your repositories")
    paging = Paging.of(request)
    text = term(request)
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        total, repos = await ui_queries.fetch_catalog_page(
            conn,
            catalog_viewer(request, identity),
            text,
            identity.username if mine else None,
            False,
            paging.size,
            paging.offset,
        )
    return await page(
        request,
        "catalog.html",
        identity=identity,
        mine=mine,
        term=text,
        repositories=repos,
        pager=pager(request, paging, total),
    )


async def catalog(request: web.Request) -> web.Response:
    return await _listing(request, mine=False)


async def mine(request: web.Request) -> web.Response:
    return await _listing(request, mine=True)
