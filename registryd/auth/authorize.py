"""The access decision of one request: its caller, the repository's facts, and the verdict of
``access/decision.py`` (raised as Unauthenticated/AccessDenied for the protocol to answer)."""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action, Caller, allows, is_open, refusal
from registryd.auth.credentials import resolve_caller
from registryd.domain import repositories
from registryd.keys import REPOSITORY, SERVICES, USER
from registryd.names import RepositoryName


def note_for_access_log(
    request: web.Request, caller: Caller, repository: RepositoryName | None
) -> None:
    if caller.identity.username is not None:
        request[USER] = caller.identity.username
    if repository is not None:
        request[REPOSITORY] = str(repository)


async def authorize(request: web.Request, action: Action, repository: RepositoryName) -> Caller:
    """Allow ``action`` on ``repository`` or raise Unauthenticated/AccessDenied.

    The repository's facts are read only when the decision needs them (not in
    open mode, not for a token, which decides alone).
    """
    svc = request.config_dict[SERVICES]
    caller = await resolve_caller(request, svc)
    note_for_access_log(request, caller, repository)
    is_public = True
    if not is_open(svc.settings) and not caller.via_token:
        repo = await repositories.resolve(svc, repository)
        is_public = repo.is_public if repo is not None else True
    if not allows(caller, repository, is_public, action, svc.settings):
        raise refusal(caller, repository, action)
    return caller
