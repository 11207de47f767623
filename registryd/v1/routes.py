"""The v1 route table."""

from __future__ import annotations

from aiohttp import web

from registryd.v1 import images, ping, tags

_IMAGE = "/v1/images/{image_id}"
# One-segment names (library/<name>) are registered first, so that
# /v1/repositories/foo/tags/x is a tag of library/foo, not repository foo/tags.
_REPOSITORY_FORMS = ("/v1/repositories/{repository}", "/v1/repositories/{namespace}/{repository}")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/_ping", ping.get_ping)
    r.add_get("/_ping", ping.get_ping)
    r.add_get("/v2/", ping.get_v2_base, allow_head=False)
    r.add_get("/v2", ping.get_v2_base, allow_head=False)

    r.add_put(_IMAGE + "/json", images.put_image_json)
    r.add_get(_IMAGE + "/json", images.get_image_json)  # GET also answers HEAD
    r.add_put(_IMAGE + "/layer", images.put_image_layer)
    r.add_get(_IMAGE + "/layer", images.get_image_layer)
    r.add_put(_IMAGE + "/checksum", images.put_image_checksum)
    r.add_get(_IMAGE + "/ancestry", images.get_image_ancestry)

    for repo in _REPOSITORY_FORMS:
        r.add_get(repo + "/tags", tags.get_tags)
        r.add_get(repo + "/tags/{tag}", tags.get_tag)
        r.add_put(repo + "/tags/{tag}", tags.put_tag)
        r.add_delete(repo + "/tags/{tag}", tags.delete_tag)
