"""The index side of v1 (v1 spec §4.2, §5.9-§5.14): repositories, image lists and tokens."""

from __future__ import annotations

import time

from aiohttp import web

from registryd.access.decision import Action, listing_viewer, may_issue_v1_token
from registryd.access.images import ImageAccess
from registryd.auth.authorize import authorize
from registryd.auth.credentials import Caller, resolve_caller
from registryd.auth.tokens import Grant, issue_token
from registryd.domain import repositories
from registryd.errors import (
    AccessDenied,
    RepositoryNameInvalid,
    RepositoryUnknown,
    Unauthenticated,
)
from registryd.http.hosts import external_host
from registryd.http.streaming import read_body
from registryd.keys import SERVICES
from registryd.names import RepositoryName
from registryd.v1.responses import NO_CACHE, json_response
from registryd.v1.url_grammar import name_of_deep_path, repository_in_path


def index_headers(
    request: web.Request, caller: Caller, name: RepositoryName, access: str
) -> dict[str, str]:
    """X-Docker-Endpoints always; a token for ``access`` when the client asked for one."""
    svc = request.config_dict[SERVICES]
    headers = {**NO_CACHE, "X-Docker-Endpoints": external_host(request, svc.settings)}
    wants_token = request.headers.get("X-Docker-Token", "").lower() == "true"
    if wants_token and may_issue_v1_token(caller, name, access):
        grant = Grant(
            username=caller.identity.username or "",
            repository=name,
            access=access,
            expires=int(time.time()) + svc.settings.token_ttl_seconds,
        )
        token = issue_token(svc.token_secret, grant)
        headers["X-Docker-Token"] = token
        headers["WWW-Authenticate"] = "Token " + token
    return headers


async def put_repository(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=False)
    caller = await authorize(request, Action.WRITE, name)
    headers = index_headers(request, caller, name, "write")  # a bad Host fails before writing
    svc = request.config_dict[SERVICES]
    body = await read_body(request, svc.settings.max_json_bytes)
    await repositories.declare(svc, name, body, ImageAccess(caller, svc.settings))
    return json_response(True, headers=headers)


async def delete_repository(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=True)
    caller = await authorize(request, Action.DELETE, name)
    headers = index_headers(request, caller, name, "delete")
    await repositories.delete(request.config_dict[SERVICES], name)
    return json_response(True, headers=headers)


async def put_repository_images(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=True)
    caller = await authorize(request, Action.WRITE, name)
    headers = index_headers(request, caller, name, "write")
    svc = request.config_dict[SERVICES]
    body = await read_body(request, svc.settings.max_json_bytes)
    await repositories.add_images(svc, name, body, ImageAccess(caller, svc.settings))
    # docker fails the push on anything but exactly 204 (v1 spec §5.10).
    return web.Response(status=204, headers=headers)


async def get_repository_images(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=True)
    caller = await authorize(request, Action.READ, name)
    images = await repositories.list_images(request.config_dict[SERVICES], name)
    return json_response(images, headers=index_headers(request, caller, name, "read"))


async def put_repository_auth(request: web.Request) -> web.Response:
    """Confirms that the request's token is valid for this repository (v1 spec §5.13)."""
    name = repository_in_path(request, reading=True)
    svc = request.config_dict[SERVICES]
    caller = await resolve_caller(request, svc)
    if not caller.via_token:
        raise Unauthenticated("A token is required")
    await repositories.fetch(svc, name)
    if all(grant.repository != name for grant in caller.grants):
        raise AccessDenied("Token is not valid for this repository")
    return json_response("OK")


async def get_repository_properties(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=True)
    await authorize(request, Action.READ, name)
    repo = await repositories.fetch(request.config_dict[SERVICES], name)
    return json_response({"access": "public" if repo.is_public else "private"})


async def put_repository_properties(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=True)
    await authorize(request, Action.WRITE, name)
    svc = request.config_dict[SERVICES]
    is_public = repositories.parse_properties(await read_body(request, 1024))
    await repositories.set_public(svc, name, is_public)
    return json_response(True)


async def get_search(request: web.Request) -> web.Response:
    svc = request.config_dict[SERVICES]
    caller = await resolve_caller(request, svc)
    result = await repositories.search(svc, dict(request.query), listing_viewer(caller))
    return json_response(result)


async def deep_repository_path(request: web.Request) -> web.Response:
    """Any ``/v1/repositories/`` URL that no route took: a name of three or more segments
    (400 on writes, 404 on reads, like every other invalid name) or a wrong method."""
    path = request.match_info["path"]
    segments = name_of_deep_path(path)
    if len(segments) <= 2:
        # A valid form, asked with a method it does not answer.
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT", "DELETE"])
    if request.method in ("GET", "HEAD"):
        raise RepositoryUnknown()
    raise RepositoryNameInvalid("/".join(segments), "at most two path segments (namespace/name)")
