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
from registryd.db import repository_queries
from registryd.db.repository_queries import RepositoryRow
from registryd.domain.services import Services
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


def token_allows(caller: Caller, repository: RepositoryName, action: Action) -> bool:
    """Whether the caller's tokens grant ``action`` on ``repository``.

    A token never buys more than it grants: whatever its holder's account may
    do, a token caller acts only within the token's repositories and access.
    """
    return any(
        grant.repository == repository and action in TOKEN_ALLOWS[grant.access]
        for grant in caller.grants
    )


def caller_may(
    caller: Caller, repository: RepositoryName, is_public: bool, action: Action, settings: Settings
) -> bool:
    """``may`` for a caller: a token caller needs both the account's right and the token's."""
    if settings.auth_mode == "none":
        return True
    if not may(caller.identity, repository, is_public, action, settings):
        return False
    return not caller.via_token or token_allows(caller, repository, action)


def may_list(
    caller: Caller, repository: RepositoryName, is_public: bool, settings: Settings
) -> bool:
    """Whether a listing (catalog, search) may show ``repository`` to ``caller``.

    A token caller sees public repositories and its tokens' readable ones, never
    the rest of its account.
    """
    if settings.auth_mode == "none":
        return True
    if caller.via_token:
        readable_public = is_public and (
            not caller.identity.is_anonymous or settings.anonymous_pull
        )
        return readable_public or token_allows(caller, repository, Action.READ)
    return may(caller.identity, repository, is_public, Action.READ, settings)


def listing_viewer(caller: Caller) -> Identity:
    """The identity a search runs as: a token caller lists like an account owning nothing.

    (The empty username is no account's: it owns no namespace, yet is not anonymous.)
    """
    return Identity("") if caller.via_token else caller.identity


def may_issue_v1_token(caller: Caller, repository: RepositoryName, access: str) -> bool:
    """Whether a v1 token for ``access`` may be handed to ``caller``: a token caller
    may only get one that allows nothing beyond what its own tokens allow."""
    if not caller.via_token:
        return True
    return all(token_allows(caller, repository, action) for action in TOKEN_ALLOWS[access])


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


async def repository_facts(svc: Services, name: RepositoryName) -> RepositoryRow | None:
    """The repository's row, from the per-process access cache when it is on."""
    if svc.access is not None:
        return await svc.access.repository(name)
    async with svc.pool.acquire() as conn:
        return await repository_queries.fetch_repository(conn, name)


async def authorize(request: web.Request, action: Action, repository: RepositoryName) -> Caller:
    """Allow ``action`` on ``repository`` or raise Unauthenticated/AccessDenied."""
    svc = request.config_dict[SERVICES]
    caller = await resolve_caller(request, svc)
    note_for_access_log(request, caller, repository)
    if svc.settings.auth_mode == "none":
        return caller
    if caller.via_token:
        _grant_for(caller, repository, action)
        return caller
    repo = await repository_facts(svc, repository)
    is_public = repo.is_public if repo is not None else True
    if not may(caller.identity, repository, is_public, action, svc.settings):
        raise refuse(caller, f"No {action.value} access to {repository}")
    return caller
