"""The v1 route table."""

from __future__ import annotations

from aiohttp import web

from registryd.v1 import images, index, ping, tags, users

_IMAGE = "/v1/images/{image_id}"
# One-segment names (library/<name>) are registered first, so that
# /v1/repositories/foo/tags/x is a tag of library/foo, not repository foo/tags.
_REPOSITORY_FORMS = ("/v1/repositories/{repository}", "/v1/repositories/{namespace}/{repository}")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/_ping", ping.get_ping)
    r.add_get("/_ping", ping.get_ping)

    r.add_put(_IMAGE + "/json", images.put_image_json)
    r.add_get(_IMAGE + "/json", images.get_image_json)  # GET also answers HEAD
    r.add_put(_IMAGE + "/layer", images.put_image_layer)
    r.add_get(_IMAGE + "/layer", images.get_image_layer)
    r.add_put(_IMAGE + "/checksum", images.put_image_checksum)
    r.add_get(_IMAGE + "/ancestry", images.get_image_ancestry)

    for path in ("/v1/users", "/v1/users/"):
        r.add_post(path, users.post_users)
        r.add_get(path, users.get_users)
    r.add_put("/v1/users/{username}/", users.put_user)
    r.add_put("/v1/users/{username}", users.put_user)
    r.add_get("/v1/search", index.get_search)

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
    r.add_route("*", "/v1/repositories/{path:(?:[^/]+/){2,}.*}", index.deep_repository_path)
