"""``/v1/repositories/[<namespace>/]<repository>/tags[/<tag>]`` (v1 spec §5.8)."""

from __future__ import annotations

from aiohttp import web

from registryd.access.decision import Action
from registryd.access.images import ImageAccess
from registryd.auth.authorize import authorize
from registryd.domain import v1_tags
from registryd.http.streaming import read_body
from registryd.keys import SERVICES
from registryd.v1.responses import json_response
from registryd.v1.url_grammar import repository_in_path, tag_in_path

# A tag body is a quoted 64-hex id; anything much larger is not a tag body.
MAX_TAG_BODY_BYTES = 1024


async def get_tags(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=True)
    await authorize(request, Action.READ, name)
    return json_response(await v1_tags.list_tags(request.config_dict[SERVICES], name))


async def get_tag(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=True)
    tag = tag_in_path(request, reading=True)
    await authorize(request, Action.READ, name)
    return json_response(await v1_tags.get_tag(request.config_dict[SERVICES], name, tag))


async def put_tag(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=False)
    tag = tag_in_path(request, reading=False)
    caller = await authorize(request, Action.WRITE, name)
    svc = request.config_dict[SERVICES]
    body = await read_body(request, MAX_TAG_BODY_BYTES)
    user_agent = request.headers.get("User-Agent", "")
    await v1_tags.put_tag(svc, name, tag, body, user_agent, ImageAccess(caller, svc.settings))
    return json_response(True)


async def delete_tag(request: web.Request) -> web.Response:
    name = repository_in_path(request, reading=True)
    tag = tag_in_path(request, reading=True)
    await authorize(request, Action.DELETE, name)
    await v1_tags.delete_tag(request.config_dict[SERVICES], name, tag)
    return json_response(True)
