"""``/v1/repositories/[<namespace>/]<repository>/tags[/<tag>]`` (v1 spec §5.8).

Names that fail validation answer 404 on reads (they cannot exist) and 400 on writes.
"""

from __future__ import annotations

from aiohttp import web

from registryd.auth.policy import Action, authorize
from registryd.domain import tags
from registryd.errors import RepositoryNameInvalid, RepositoryUnknown, TagNameInvalid, TagUnknown
from registryd.http.streaming import read_body
from registryd.keys import SERVICES
from registryd.names import RepositoryName, parse_tag
from registryd.v1.responses import json_response

# A tag body is a quoted 64-hex id; anything much larger is not a tag body.
MAX_TAG_BODY_BYTES = 1024


def _repository(request: web.Request, *, reading: bool) -> RepositoryName:
    try:
        return RepositoryName.parse(
            request.match_info.get("namespace"), request.match_info["repository"]
        )
    except RepositoryNameInvalid:
        if reading:
            raise RepositoryUnknown() from None
        raise


def _tag(request: web.Request, *, reading: bool) -> str:
    raw = request.match_info["tag"]
    try:
        return parse_tag(raw)
    except TagNameInvalid:
        if reading:
            raise TagUnknown(raw) from None
        raise


async def get_tags(request: web.Request) -> web.Response:
    name = _repository(request, reading=True)
    await authorize(request, Action.READ, name)
    return json_response(await tags.list_tags(request.app[SERVICES], name))


async def get_tag(request: web.Request) -> web.Response:
    name = _repository(request, reading=True)
    tag = _tag(request, reading=True)
    await authorize(request, Action.READ, name)
    return json_response(await tags.get_tag(request.app[SERVICES], name, tag))


async def put_tag(request: web.Request) -> web.Response:
    name = _repository(request, reading=False)
    tag = _tag(request, reading=False)
    await authorize(request, Action.WRITE, name)
    body = await read_body(request, MAX_TAG_BODY_BYTES)
    await tags.put_tag(
        request.app[SERVICES], name, tag, body, request.headers.get("User-Agent", "")
    )
    return json_response(True)


async def delete_tag(request: web.Request) -> web.Response:
    name = _repository(request, reading=True)
    tag = _tag(request, reading=True)
    await authorize(request, Action.DELETE, name)
    await tags.delete_tag(request.app[SERVICES], name, tag)
    return json_response(True)
