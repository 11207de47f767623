"""The single access decision every endpoint goes through (v1 spec §4.3, §4.6).

Namespaces are usernames: a user owns ``<username>/*``; ``library/*`` belongs
to admins. Public repositories are readable by everyone (anonymous callers
too, unless anonymous pulls are off); private ones by their owner and admins.
A token grants one access level on one repository, whoever presents it.
"""

from __future__ import annotations

import enum

from aiohttp import web

from registryd.auth.credentials import Caller, resolve_caller
from registryd.auth.identity import Identity
from registryd.auth.tokens import Grant
from registryd.config import Settings
from registryd.db import queries
from registryd.errors import AccessDenied, Unauthenticated
from registryd.keys import REPOSITORY, SERVICES, USER
from registryd.names import LIBRARY_NAMESPACE, RepositoryName


class Action(enum.Enum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"


# Token access level -> the actions it allows (our choice in v1 spec §4.3).
TOKEN_ALLOWS = {
    "read": {Action.READ},
    "write": {Action.READ, Action.WRITE, Action.DELETE},
    "delete": {Action.DELETE},
    # v2 bearer token scope actions (Docker token spec): one grant per action.
    "pull": {Action.READ},
    "push": {Action.WRITE},
}


def may(
    identity: Identity,
    repository: RepositoryName,
    is_public: bool,
    action: Action,
    settings: Settings,
) -> bool:
    """Whether ``identity`` may do ``action`` on ``repository`` (pure; no tokens involved)."""
    if identity.is_admin:
        return True
    owns = identity.username is not None and identity.username == repository.namespace
    if action is Action.READ:
        if is_public:
            return not identity.is_anonymous or settings.anonymous_pull
        return owns
    return owns and repository.namespace != LIBRARY_NAMESPACE


def refuse(caller: Caller, reason: str) -> Exception:
    """401 for anonymous callers (credentials might help), 403 for known ones."""
    if caller.identity.is_anonymous and not caller.via_token:
        return Unauthenticated()
    return AccessDenied(reason)


def note_for_access_log(
    request: web.Request, caller: Caller, repository: RepositoryName | None
) -> None:
    if caller.identity.username is not None:
        request[USER] = caller.identity.username
    if repository is not None:
        request[REPOSITORY] = str(repository)


def _grant_for(caller: Caller, repository: RepositoryName, action: Action) -> Grant:
    held = [grant for grant in caller.grants if grant.repository == repository]
    for grant in held:
        if action in TOKEN_ALLOWS[grant.access]:
            return grant
    if held:
        granted = ", ".join(grant.access for grant in held)
        raise AccessDenied(f"Token grants {granted} access, not {action.value}")
    raise AccessDenied("Token is not valid for this repository")


async def authorize(request: web.Request, action: Action, repository: RepositoryName) -> Caller:
    """Allow ``action`` on ``repository`` or raise Unauthenticated/AccessDenied."""
    svc = request.app[SERVICES]
    caller = await resolve_caller(request, svc)
    note_for_access_log(request, caller, repository)
    if svc.settings.auth_mode == "none":
        return caller
    if caller.via_token:
        _grant_for(caller, repository, action)
        return caller
    async with svc.pool.acquire() as conn:
        repo = await queries.fetch_repository(conn, repository)
    is_public = repo.is_public if repo is not None else True
    if not may(caller.identity, repository, is_public, action, svc.settings):
        raise refuse(caller, f"No {action.value} access to {repository}")
    return caller
