"""The v1 sub-application: its route table, its 401 challenges and its error renderer.

Docker's v1 API lives under ``/v1`` (plus ``/_ping`` at the root, which the parent app
serves with ``ping.get_ping``). Paths below are relative to the ``/v1`` prefix.
"""

from __future__ import annotations

from aiohttp import web

from registryd.http.middleware import Handler, error_middleware
from registryd.v1 import errors, images, index, ping, tags, users

PREFIX = "/v1"

_IMAGE = "/images/{image_id}"
# One-segment names (library/<name>) are registered first, so that
# /v1/repositories/foo/tags/x is a tag of library/foo, not repository foo/tags.
_REPOSITORY_FORMS = ("/repositories/{repository}", "/repositories/{namespace}/{repository}")

# v1 spec §2: the registry side (images, tags) answers 401 with a Token challenge, the
# index's repository calls with Basic or Token; everything else (users, search) with Basic.
_TOKEN_CHALLENGE: frozenset[Handler] = frozenset(
    {
        images.put_image_json,
        images.get_image_json,
        images.put_image_layer,
        images.get_image_layer,
        images.put_image_checksum,
        images.get_image_ancestry,
        tags.get_tags,
        tags.get_tag,
        tags.put_tag,
        tags.delete_tag,
    }
)
_BASIC_OR_TOKEN_CHALLENGE: frozenset[Handler] = frozenset(
    {
        index.put_repository,
        index.delete_repository,
        index.put_repository_images,
        index.get_repository_images,
        index.put_repository_auth,
        index.get_repository_properties,
        index.put_repository_properties,
        index.deep_repository_path,
    }
)


def challenge(request: web.Request) -> str:
    """The ``WWW-Authenticate`` of a 401, chosen by the route that took the request."""
    handler = request.match_info.handler
    if handler in _TOKEN_CHALLENGE:
        return errors.TOKEN_CHALLENGE
    if handler in _BASIC_OR_TOKEN_CHALLENGE:
        return errors.BASIC_CHALLENGE + ", " + errors.TOKEN_CHALLENGE
    return errors.BASIC_CHALLENGE


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_ping", ping.get_ping)

    r.add_put(_IMAGE + "/json", images.put_image_json)
    r.add_get(_IMAGE + "/json", images.get_image_json)  # GET also answers HEAD
    r.add_put(_IMAGE + "/layer", images.put_image_layer)
    r.add_get(_IMAGE + "/layer", images.get_image_layer)
    r.add_put(_IMAGE + "/checksum", images.put_image_checksum)
    r.add_get(_IMAGE + "/ancestry", images.get_image_ancestry)

    for path in ("/users", "/users/"):
        r.add_post(path, users.post_users)
        r.add_get(path, users.get_users)
    r.add_put("/users/{username}/", users.put_user)
    r.add_put("/users/{username}", users.put_user)
    r.add_get("/search", index.get_search)

    for repo in _REPOSITORY_FORMS:
        r.add_put(repo + "/", index.put_repository)
        r.add_delete(repo + "/", index.delete_repository)
        r.add_put(repo + "/images", index.put_repository_images)
        r.add_get(repo + "/images", index.get_repository_images)
        r.add_put(repo + "/auth", index.put_repository_auth)
        r.add_get(repo + "/properties", index.get_repository_properties)
        r.add_put(repo + "/properties", index.put_repository_properties)
        r.add_get(repo + "/tags", tags.get_tags)
        r.add_get(repo + "/tags/{tag}", tags.get_tag)
        r.add_put(repo + "/tags/{tag}", tags.put_tag)
        r.add_delete(repo + "/tags/{tag}", tags.delete_tag)
    # Last: a name of three or more segments matched none of the forms above.
    r.add_route("*", "/repositories/{path:(?:[^/]+/){2,}.*}", index.deep_repository_path)


def render(request: web.Request, exc: errors.RenderedError) -> web.Response:
    """v1's renderer with the route's challenge on a 401."""
    return errors.render(request, exc, challenge(request))


def create_app() -> web.Application:
    """The v1 API, to mount at ``PREFIX``; its errors are ``{"error": ...}`` (v1 spec)."""
    v1 = web.Application(middlewares=[error_middleware(render, errors.render_internal)])
    add_routes(v1)
    return v1
