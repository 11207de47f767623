"""``/v2/<name>/blobs/uploads/[<upload_id>]``: blob upload sessions (spec end-4 … end-6,
end-11, end-13, and DELETE to cancel).

A session URL answers PATCH (append a chunk: streamed without ``Content-Range``,
or ranged and in order), PUT ``?digest=`` (final chunk, verify, store), GET
(progress) and DELETE (cancel). Clients append ``&digest=`` to whatever
``Location`` we gave, so the session is found by its path alone.
"""

from __future__ import annotations

import re

from aiohttp import web

from registryd.access.decision import Action
from registryd.auth.credentials import CALLER
from registryd.digest import Digest
from registryd.domain import blobs, uploads
from registryd.errors import AuthChallenge, ContentRangeInvalid, DigestInvalid
from registryd.http.streaming import body_chunks
from registryd.keys import SERVICES
from registryd.names import RepositoryName
from registryd.v2.access import authorize, may, scope, token_never_asked_for
from registryd.v2.url_grammar import blob_url, repository_name, upload_url

_CONTENT_RANGE_RE = re.compile(r"\s*(?:bytes[ =])?(\d{1,18})-(\d{1,18})(?:/(\d{1,18}|\*))?\s*")


def _progress_headers(request: web.Request, upload_id: str, size_bytes: int) -> dict[str, str]:
    # "Range: 0-<last byte>", no unit; an empty upload is "0-0" as distribution answers.
    return {
        "Location": upload_url(request, upload_id),
        "Range": f"0-{max(size_bytes - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _created(request: web.Request, digest: Digest) -> web.Response:
    return web.Response(
        status=201,
        headers={"Location": blob_url(request, digest), "Docker-Content-Digest": str(digest)},
    )


def _chunk_range(request: web.Request) -> uploads.ChunkRange | None:
    """The PATCH's ``Content-Range``; a malformed one is a 400 (an out-of-order one, 416,
    is for the session to tell)."""
    header = request.headers.get("Content-Range")
    if header is None:
        return None
    match = _CONTENT_RANGE_RE.fullmatch(header)
    if match is None:
        raise ContentRangeInvalid(f"malformed Content-Range {header!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise ContentRangeInvalid(f"Content-Range {header!r} ends before it starts")
    total = int(match.group(3)) if match.group(3) not in (None, "*") else None
    if total is not None and end >= total:
        raise ContentRangeInvalid(f"Content-Range {header!r} ends past its total")
    return uploads.ChunkRange(start, end, total)


def _username(request: web.Request) -> str | None:
    """Who opens a session, for the per-user cap (anonymous: only with auth off)."""
    caller = request.get(CALLER)
    return caller.identity.username if caller is not None else None


def _query_digest(request: web.Request, key: str) -> Digest | None:
    text = request.query.get(key)
    return None if text is None else Digest.parse(text)


async def post_upload(request: web.Request) -> web.Response:
    """Start a session (202), mount from another repository (201) or take the whole blob (201)."""
    name = repository_name(request)
    mount = _query_digest(request, "mount")
    digest = _query_digest(request, "digest")
    source_text = request.query.get("from")
    source = RepositoryName.parse_oci(source_text) if source_text is not None else None
    await authorize(request, Action.WRITE, name, also_read=source if mount else None)
    svc = request.config_dict[SERVICES]
    # Without "from" we do not look for the blob elsewhere: that would tell the
    # client about blobs in repositories it cannot read. Otherwise: a session.
    if mount is not None and source is not None:
        if await may(request, Action.READ, source):
            if await blobs.mount_blob(svc, name, source, mount):
                return _created(request, mount)
        elif token_never_asked_for(request, source):
            # The token came from a challenge for the target alone: ask for the
            # source's pull scope too, or every mount silently becomes a re-upload.
            wanted = f"{scope(name, Action.WRITE)} {scope(source, Action.READ)}"
            raise AuthChallenge("token lacks the mount source", wanted, "insufficient_scope")
    if digest is not None:
        body = body_chunks(request, svc.settings.max_layer_bytes)
        await uploads.upload_whole_blob(svc, name, digest, body, _username(request))
        return _created(request, digest)
    upload_id = await uploads.start_upload(svc, name, _username(request))
    return web.Response(status=202, headers=_progress_headers(request, upload_id, 0))


async def patch_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    upload_id = request.match_info["upload_id"]
    chunk_range = _chunk_range(request)
    await authorize(request, Action.WRITE, name)
    svc = request.config_dict[SERVICES]
    size = await uploads.append_chunk(
        svc, name, upload_id, body_chunks(request, svc.settings.max_layer_bytes), chunk_range
    )
    return web.Response(status=202, headers=_progress_headers(request, upload_id, size))


async def put_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    upload_id = request.match_info["upload_id"]
    digest = _query_digest(request, "digest")
    if digest is None:
        raise DigestInvalid("(missing ?digest=)")
    # The closing PUT may carry the last chunk with its Content-Range (spec end-6);
    # one at the wrong offset is 416 and the session is kept so the client can resume.
    chunk_range = _chunk_range(request)
    await authorize(request, Action.WRITE, name)
    svc = request.config_dict[SERVICES]
    body = body_chunks(request, svc.settings.max_layer_bytes)
    await uploads.complete_upload(svc, name, upload_id, digest, body, chunk_range)
    return _created(request, digest)


async def get_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    upload_id = request.match_info["upload_id"]
    await authorize(request, Action.WRITE, name)
    size = await uploads.upload_size(request.config_dict[SERVICES], name, upload_id)
    return web.Response(status=204, headers=_progress_headers(request, upload_id, size))


async def delete_upload(request: web.Request) -> web.Response:
    name = repository_name(request)
    upload_id = request.match_info["upload_id"]
    await authorize(request, Action.WRITE, name)
    await uploads.cancel_upload(request.config_dict[SERVICES], name, upload_id)
    return web.Response(status=204)
