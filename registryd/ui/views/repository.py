"""A repository: its tags (v1 and v2), pull commands, and the owner's actions."""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action
from registryd.db import ui_queries
from registryd.db.ui_queries import RepositoryHeader
from registryd.digest import Digest
from registryd.domain import manifests, repositories, v1_tags
from registryd.domain.services import Services
from registryd.errors import RequestInvalid
from registryd.keys import SERVICES
from registryd.names import parse_tag
from registryd.ui import display, session
from registryd.ui.access import allows, readable_repository, require
from registryd.ui.forms import checked_form, field, notice, see_other
from registryd.ui.paging import Paging, pager, term
from registryd.ui.render import page


def registry_host(request: web.Request) -> str:
    return request.config_dict[SERVICES].settings.public_host or request.host


def repository_url(name: str) -> str:
    return f"/ui/r/{display.path_part(name)}"


async def repository(request: web.Request) -> web.Response:
    identity = await session.viewer(request)
    paging = Paging.of(request)
    text = term(request)
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        repo = await readable_repository(request, conn, identity, request.match_info["name"])
        total, rows = await ui_queries.fetch_tags_page(
            conn, repo.repository_id, text, paging.size, paging.offset
        )
    name = repo.name.for_oci()
    host = registry_host(request)
    first = rows[0] if rows else None
    commands = (
        display.pull_commands(
            host, name, first.tag, plain_http=not request.secure, v2=first.origin == "v2"
        )
        if first is not None
        else []
    )
    return await page(
        request,
        "repository.html",
        identity=identity,
        repo=repo,
        name=name,
        host=host,
        term=text,
        tags=[(row, display.index_platforms(row.index)) for row in rows],
        commands=commands,
        pager=pager(request, paging, total),
        may_delete=allows(request, identity, repo, Action.DELETE),
        may_write=allows(request, identity, repo, Action.WRITE),
        notice=notice(request),
    )


async def _form_on_repository(
    request: web.Request, action: Action
) -> tuple[dict[str, str], Services, RepositoryHeader]:
    """A state-changing form on the URL's repository: CSRF checked, the viewer allowed
    ``action`` there (as the APIs decide); the form's fields, the services, the repository."""
    fields = await checked_form(request)
    identity = await session.viewer(request)
    svc = request.config_dict[SERVICES]
    async with svc.pool.acquire() as conn:
        repo = await readable_repository(request, conn, identity, request.match_info["name"])
    require(request, identity, repo, action)
    return fields, svc, repo


async def set_visibility(request: web.Request) -> web.StreamResponse:
    fields, svc, repo = await _form_on_repository(request, Action.WRITE)
    access = field(fields, "access")
    if access not in ("private", "public"):
        raise RequestInvalid("access must be private or public")
    await repositories.set_public(svc, repo.name, access == "public")
    return see_other(f"{repository_url(str(repo.name))}?notice=made-{access}")


async def delete_tag(request: web.Request) -> web.StreamResponse:
    fields, svc, repo = await _form_on_repository(request, Action.DELETE)
    tag = parse_tag(field(fields, "tag"))
    if fields.get("origin") == "v1":
        await v1_tags.delete_tag(svc, repo.name, tag)
    else:
        await manifests.delete_manifest(svc, repo.name, tag)
    return see_other(f"{repository_url(str(repo.name))}?notice=tag-deleted")


async def delete_manifest(request: web.Request) -> web.StreamResponse:
    fields, svc, repo = await _form_on_repository(request, Action.DELETE)
    digest = Digest.parse(field(fields, "digest"))
    await manifests.delete_manifest(svc, repo.name, digest)
    return see_other(f"{repository_url(str(repo.name))}?notice=manifest-deleted")
