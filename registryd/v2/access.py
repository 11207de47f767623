"""v2 access: the policy's decision, turned into the Docker token flow's answers.

Every v2 handler asks ``registryd.auth.authorize.authorize``. A caller without
credentials, with bad ones, or with a bearer token lacking the scope gets a
401 challenge naming our token endpoint and the scope to ask for (so clients
fetch a fitting token and retry); a signed-in user without the permission gets
403 DENIED.
"""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action, Caller, is_open, v2_scope_actions
from registryd.auth import authorize as request_access
from registryd.auth.bearer import SERVICE
from registryd.auth.credentials import CALLER, resolve_caller
from registryd.errors import AccessDenied, AuthChallenge, RegistryError, Unauthenticated
from registryd.http.hosts import external_host
from registryd.keys import SERVICES
from registryd.names import RepositoryName

TOKEN_PATH = "/v2/token"


def scope(name: RepositoryName, action: Action) -> str:
    return f"repository:{name.for_oci()}:{','.join(v2_scope_actions(action))}"


def challenge_header(request: web.Request, challenge: AuthChallenge) -> str:
    """``WWW-Authenticate: Bearer realm=…,service=…[,scope=…][,error=…]``."""
    host = external_host(request, request.config_dict[SERVICES].settings)
    parts = [f'realm="{request.scheme}://{host}{TOKEN_PATH}"', f'service="{SERVICE}"']
    if challenge.scope is not None:
        parts.append(f'scope="{challenge.scope}"')
    if challenge.error is not None:
        parts.append(f'error="{challenge.error}"')
    return "Bearer " + ",".join(parts)


async def authorize(
    request: web.Request,
    action: Action,
    name: RepositoryName,
    also_read: RepositoryName | None = None,
) -> None:
    """Allow ``action`` on ``name`` or raise AuthChallenge (401) / AccessDenied (403).

    ``also_read`` is a repository the request would like to read as well (the
    ``from`` of a mount): the challenge asks for its pull scope too, so that the
    token the client fetches can mount rather than silently re-upload.
    """
    try:
        await request_access.authorize(request, action, name)
    except Unauthenticated as exc:
        # RFC 6750 §3.1: "invalid_token" only when a token was presented at all.
        error = "invalid_token" if "Authorization" in request.headers else None
        raise AuthChallenge(exc.reason, _wanted(action, name, also_read), error) from None
    except AccessDenied as exc:
        caller = request.get(CALLER)
        if caller is not None and caller.bearer:
            wanted = _wanted(action, name, also_read)
            raise AuthChallenge(exc.reason, wanted, "insufficient_scope") from None
        if caller is not None and caller.identity.is_anonymous:
            raise AuthChallenge(exc.reason, _wanted(action, name, also_read)) from None
        raise


def _wanted(action: Action, name: RepositoryName, also_read: RepositoryName | None) -> str:
    """The scope a challenge names (only a refusal needs it: not built for every request)."""
    wanted = scope(name, action)
    if also_read is not None and also_read != name:
        wanted += " " + scope(also_read, Action.READ)
    return wanted


def token_never_asked_for(request: web.Request, name: RepositoryName) -> bool:
    """Whether the caller's bearer token was issued without any scope for ``name``.

    Then a fresh token might grant it, and a 401 naming that scope is worth a
    retry; a token that was asked and refused gets no second challenge (no loop).
    """
    caller = request.get(CALLER)
    return caller is not None and caller.bearer and name not in caller.token_scopes


async def may(request: web.Request, action: Action, name: RepositoryName) -> bool:
    """Whether ``action`` on ``name`` would be allowed (for optional steps such as mount)."""
    try:
        await request_access.authorize(request, action, name)
    except RegistryError:
        return False
    return True


async def authenticate(request: web.Request) -> Caller:
    """The caller of ``GET /v2/`` and the catalog: anyone, unless auth is on and no
    credentials came (then 401, so clients learn the realm before anything else)."""
    svc = request.config_dict[SERVICES]
    try:
        caller = await resolve_caller(request, svc)
    except Unauthenticated as exc:
        raise AuthChallenge(exc.reason, None, "invalid_token") from None
    if not is_open(svc.settings) and caller.identity.is_anonymous and not caller.bearer:
        raise AuthChallenge("authentication required", None)
    return caller
