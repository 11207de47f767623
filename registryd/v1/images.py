"""``/v1/images/<image_id>/{json,layer,checksum,ancestry}`` (v1 spec §5.2-§5.7)."""

from __future__ import annotations

from aiohttp import web

from registryd.access.images import ImageAccess
from registryd.auth.image_access import authorize_image_read, authorize_image_write
from registryd.domain import images
from registryd.errors import ChecksumInvalid
from registryd.http.streaming import body_chunks, read_body, send_blob
from registryd.keys import SERVICES
from registryd.names import parse_image_id
from registryd.v1.responses import immutable_headers, json_response, not_modified, raw_json_response

# A checksum is "sha256:" or "tarsum+sha256:" and 64 hex; anything far longer is not one.
MAX_CHECKSUM_CHARS = 256


def checksum_header(request: web.Request, name: str) -> str | None:
    """A checksum header as sent, if it is printable ASCII (it is stored and echoed)."""
    value = request.headers.get(name)
    if value is not None and (
        len(value) > MAX_CHECKSUM_CHARS or not value.isascii() or not value.isprintable()
    ):
        raise ChecksumInvalid()
    return value


async def put_image_json(request: web.Request) -> web.Response:
    image_id = parse_image_id(request.match_info["image_id"])
    caller = await authorize_image_write(request, image_id)
    svc = request.config_dict[SERVICES]
    body = await read_body(request, svc.settings.max_json_bytes)
    await images.put_image_json(svc, image_id, body, ImageAccess(caller, svc.settings))
    return json_response(True)


async def get_image_json(request: web.Request) -> web.Response:
    image_id = parse_image_id(request.match_info["image_id"])
    public = await authorize_image_read(request, image_id)
    image = await images.fetch_complete_image(request.config_dict[SERVICES], image_id)
    if (cached := not_modified(request, public)) is not None:
        return cached
    headers = immutable_headers(public)
    assert image.layer_size_bytes is not None
    assert image.checksum_payload is not None
    headers["X-Docker-Size"] = str(image.layer_size_bytes)
    headers["X-Docker-Checksum-Payload"] = image.checksum_payload
    if image.checksum_tarsum is not None:
        headers["X-Docker-Checksum"] = image.checksum_tarsum
    return raw_json_response(image.json, headers)


async def put_image_layer(request: web.Request) -> web.Response:
    image_id = parse_image_id(request.match_info["image_id"])
    await authorize_image_write(request, image_id)
    svc = request.config_dict[SERVICES]
    await images.put_image_layer(svc, image_id, body_chunks(request, svc.settings.max_layer_bytes))
    return json_response(True)


async def get_image_layer(request: web.Request) -> web.StreamResponse:
    image_id = parse_image_id(request.match_info["image_id"])
    public = await authorize_image_read(request, image_id)
    svc = request.config_dict[SERVICES]
    image = await images.fetch_complete_image(svc, image_id)
    if (cached := not_modified(request, public)) is not None:
        return cached
    blob = await images.open_image_layer(svc, image)
    headers = immutable_headers(public)
    headers["ETag"] = f'"{image.layer_digest}"'
    return await send_blob(request, blob, headers, zero_copy=svc.settings.sendfile)


async def put_image_checksum(request: web.Request) -> web.Response:
    image_id = parse_image_id(request.match_info["image_id"])
    await authorize_image_write(request, image_id)
    await images.put_image_checksum(
        request.config_dict[SERVICES],
        image_id,
        payload_checksum=checksum_header(request, "X-Docker-Checksum-Payload"),
        tarsum=checksum_header(request, "X-Docker-Checksum"),
    )
    return json_response(True)


async def get_image_ancestry(request: web.Request) -> web.Response:
    image_id = parse_image_id(request.match_info["image_id"])
    public = await authorize_image_read(request, image_id)
    image = await images.fetch_complete_image(request.config_dict[SERVICES], image_id)
    if (cached := not_modified(request, public)) is not None:
        return cached
    return json_response(image.ancestry, headers=immutable_headers(public))
