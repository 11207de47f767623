"""``GET /v2/token``: the Docker token endpoint (the realm of our 401 challenges).

Basic credentials (the same users as v1), a v1 index token, or none
(anonymous). Each requested ``scope=repository:<name>:<actions>`` is granted
only the actions the policy allows this caller: for Basic the whole account,
for a v1 token at most what that token grants (its repository, its access).
Refused actions are left out, not an error, as the token spec says. A bearer
token is refused outright: it cannot be traded for a wider one. The answer
carries ``token`` and ``access_token`` (both spellings are read by clients)
and its lifetime.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiohttp import web

from registryd.access.decision import TOKEN_ALLOWS, may_grant
from registryd.auth import bearer
from registryd.auth.credentials import resolve_caller
from registryd.domain import repositories
from registryd.errors import AuthChallenge, Unauthenticated
from registryd.keys import SERVICES


async def get_token(request: web.Request) -> web.Response:
    svc = request.config_dict[SERVICES]
    scheme = request.headers.get("Authorization", "").strip().partition(" ")[0]
    if scheme.lower() == "bearer":
        raise AuthChallenge("present user credentials, not a token", None)
    try:
        caller = await resolve_caller(request, svc)
    except Unauthenticated as exc:
        raise AuthChallenge(exc.reason, None, "invalid_token") from None
    requested = [
        scope
        for value in request.query.getall("scope", [])
        for text in value.split(" ")
        if (scope := bearer.parse_scope(text)) is not None
    ]
    access: list[tuple[str, list[str]]] = []
    for scope in requested:
        repo = await repositories.resolve(svc, scope.repository)
        is_public = repo.is_public if repo is not None else True
        granted = sorted(
            action
            for action in scope.actions
            if all(
                may_grant(caller, scope.repository, is_public, allowed, svc.settings)
                for allowed in TOKEN_ALLOWS[action]
            )
        )
        access.append((scope.name, granted))
    now = time.time()
    token = bearer.issue(svc.token_secret, caller.identity.username, access, now)
    return web.json_response(
        {
            "token": token,
            "access_token": token,
            "expires_in": bearer.TOKEN_TTL_SECONDS,
            "issued_at": datetime.fromtimestamp(now, UTC).isoformat(),
        },
        headers={"Cache-Control": "no-store"},
    )
