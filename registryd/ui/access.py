"""The UI's access decisions: ``access.decision.account_may``, exactly as the APIs apply
it to a signed-in user (the UI never holds tokens), and the catalog filter that mirrors
it in SQL."""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action, account_may, sees_everything
from registryd.access.identity import Identity
from registryd.db import ui_queries
from registryd.db.conn import Conn
from registryd.db.ui_queries import RepositoryHeader, Viewer
from registryd.errors import AccessDenied, Unauthenticated
from registryd.keys import REPOSITORY, SERVICES
from registryd.names import LIBRARY_NAMESPACE, RepositoryName


class NotFound(web.HTTPNotFound):
    """What a repository the viewer may not read looks like: the same as a missing one."""


def catalog_viewer(request: web.Request, identity: Identity) -> Viewer:
    settings = request.config_dict[SERVICES].settings
    return Viewer(
        username=identity.username,
        sees_everything=sees_everything(identity, settings),
        sees_public=not identity.is_anonymous or settings.anonymous_pull,
    )


def allows(
    request: web.Request, identity: Identity, repo: RepositoryHeader, action: Action
) -> bool:
    settings = request.config_dict[SERVICES].settings
    return account_may(identity, repo.name, repo.is_public, action, settings)


def parse_name(text: str) -> RepositoryName:
    """``ns/name`` (deeper v2 names keep the rest) or a one-part ``library`` name."""
    namespace, slash, rest = text.partition("/")
    if not slash:
        return RepositoryName(LIBRARY_NAMESPACE, text)
    return RepositoryName(namespace, rest)


async def readable_repository(
    request: web.Request, conn: Conn, identity: Identity, text: str
) -> RepositoryHeader:
    """The repository; 404 alike when missing or not readable."""
    if not text or len(text) > 512:
        raise NotFound()
    repo = await ui_queries.fetch_repository_header(conn, parse_name(text))
    if repo is None or not allows(request, identity, repo, Action.READ):
        raise NotFound()
    request[REPOSITORY] = str(repo.name)
    return repo


def require(
    request: web.Request, identity: Identity, repo: RepositoryHeader, action: Action
) -> None:
    if not allows(request, identity, repo, action):
        if identity.is_anonymous:
            raise Unauthenticated("Sign in first")
        raise AccessDenied(f"You may not {action.value} {repo.name}")


def require_admin(request: web.Request, identity: Identity) -> None:
    if identity.is_admin:
        return
    if identity.is_anonymous:
        raise Unauthenticated("Sign in first")
    raise AccessDenied("Administrators only")
