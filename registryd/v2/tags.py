"""``GET /v2/<name>/tags/list`` and ``GET /v2/_catalog``: sorted, paginated with ``n``,
``last`` and ``Link`` (spec end-8a, end-8b)."""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action, may_list
from registryd.db.repository_queries import RepositoryRow
from registryd.domain import catalog, v2_tags
from registryd.domain.v2_paging import Page, parse_page_size
from registryd.errors import RepositoryNameInvalid, TagNameInvalid
from registryd.jsonbody import storable_text
from registryd.keys import SERVICES
from registryd.v2.access import authenticate, authorize
from registryd.v2.url_grammar import next_link, repository_name

# A page is at most this long whatever ``n`` asks for; a Link leads on.
MAX_PAGE = 1000


def _headers(request: web.Request, page: Page, n: int) -> dict[str, str]:
    last = page.last or (page.items[-1] if page.items else None)
    if not page.more or last is None:
        return {}
    return {"Link": next_link(request.path, n=n, last=last)}


async def get_tags(request: web.Request) -> web.Response:
    name = repository_name(request)
    n = parse_page_size(request.query.get("n"), MAX_PAGE)
    last = request.query.get("last") or None
    if last is not None and not storable_text(last):
        raise TagNameInvalid(last)  # no tag holds NUL; the database could not compare it
    await authorize(request, Action.READ, name)
    limit = MAX_PAGE if n is None else n
    page = await v2_tags.list_tags(request.config_dict[SERVICES], name, last, limit)
    return web.json_response(
        {"name": request.match_info["name"], "tags": page.items},
        headers=_headers(request, page, limit),
    )


async def get_catalog(request: web.Request) -> web.Response:
    n = parse_page_size(request.query.get("n"), MAX_PAGE)
    last = request.query.get("last") or None
    if last is not None and not storable_text(last):
        raise RepositoryNameInvalid(last, "last must be a repository name")
    caller = await authenticate(request)
    settings = request.config_dict[SERVICES].settings

    def visible(row: RepositoryRow) -> bool:
        # The policy's own rule: list only what the caller could pull (a token: within it).
        return may_list(caller, row.name, row.is_public, settings)

    limit = MAX_PAGE if n is None else n
    page = await catalog.list_repositories(request.config_dict[SERVICES], last, limit, visible)
    return web.json_response({"repositories": page.items}, headers=_headers(request, page, limit))
