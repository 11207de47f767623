"""``/v1/images/<image_id>/{json,layer,checksum,ancestry}`` (v1 spec §5.2-§5.7)."""

from __future__ import annotations

from aiohttp import web

from registryd.auth.image_access import ImageAccess, authorize_image
from registryd.auth.policy import Action
from registryd.domain import images
from registryd.http.streaming import body_chunks, read_body, send_blob
from registryd.keys import SERVICES
from registryd.names import ImageId, parse_image_id
from registryd.v1.responses import immutable_headers, json_response, not_modified, raw_json_response


async def _image_id(request: web.Request, action: Action) -> ImageId:
    image_id = parse_image_id(request.match_info["image_id"])
    await authorize_image(request, action, image_id)
    return image_id


async def put_image_json(request: web.Request) -> web.Response:
    image_id = parse_image_id(request.match_info["image_id"])
    caller = await authorize_image(request, Action.WRITE, image_id)
    svc = request.app[SERVICES]
    body = await read_body(request, svc.settings.max_json_bytes)
    await images.put_image_json(svc, image_id, body, ImageAccess(caller, svc.settings))
    return json_response(True)


async def get_image_json(request: web.Request) -> web.Response:
    image_id = await _image_id(request, Action.READ)
    image = await images.fetch_complete_image(request.app[SERVICES], image_id)
    if (cached := not_modified(request)) is not None:
        return cached
    headers = immutable_headers()
    assert image.layer_size_bytes is not None
    assert image.checksum_payload is not None
    headers["X-Docker-Size"] = str(image.layer_size_bytes)
    headers["X-Docker-Checksum-Payload"] = image.checksum_payload
    if image.checksum_tarsum is not None:
        headers["X-Docker-Checksum"] = image.checksum_tarsum
    return raw_json_response(image.json, headers)


async def put_image_layer(request: web.Request) -> web.Response:
    image_id = await _image_id(request, Action.WRITE)
    svc = request.app[SERVICES]
    await images.put_image_layer(svc, image_id, body_chunks(request, svc.settings.max_layer_bytes))
    return json_response(True)


async def get_image_layer(request: web.Request) -> web.StreamResponse:
    image_id = await _image_id(request, Action.READ)
    svc = request.app[SERVICES]
    image = await images.fetch_complete_image(svc, image_id)
    if (cached := not_modified(request)) is not None:
        return cached
    blob = await images.open_image_layer(svc, image)
    headers = immutable_headers()
    headers["ETag"] = f'"{image.layer_digest}"'
    return await send_blob(request, blob, headers, zero_copy=svc.settings.sendfile)


async def put_image_checksum(request: web.Request) -> web.Response:
    image_id = await _image_id(request, Action.WRITE)
    await images.put_image_checksum(
        request.app[SERVICES],
        image_id,
        payload_checksum=request.headers.get("X-Docker-Checksum-Payload"),
        tarsum=request.headers.get("X-Docker-Checksum"),
    )
    return json_response(True)


async def get_image_ancestry(request: web.Request) -> web.Response:
    image_id = await _image_id(request, Action.READ)
    image = await images.fetch_complete_image(request.app[SERVICES], image_id)
    if (cached := not_modified(request)) is not None:
        return cached
    return json_response(image.ancestry, headers=immutable_headers())
