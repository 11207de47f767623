"""Domain errors as v1 responses: ``{"error": message}`` with the reference's statuses."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from registryd import errors as e
from registryd.names import TAG_PATTERN
from registryd.v1.responses import NO_CACHE

_Message = str | Callable[[e.RegistryError], str]

# Messages are byte-exact where docker compares them ("Image already exists").
TABLE: dict[type[e.RegistryError], tuple[int, _Message]] = {
    e.ImageIdInvalid: (404, "Invalid image ID"),
    e.ImageUnknown: (404, "Image not found"),
    e.ImageBeingUploaded: (400, "Image is being uploaded, retry later"),
    e.ImageAlreadyExists: (409, "Image already exists"),
    e.ImageJsonInvalid: (400, lambda x: x.reason if isinstance(x, e.ImageJsonInvalid) else ""),
    e.ParentUnknown: (400, "Image depends on a non existing parent"),
    e.ImageChanged: (409, "Image JSON changed while the layer was uploading; retry the upload"),
    e.LayerNotUploaded: (400, "Layer not uploaded"),
    e.ChecksumMissing: (400, "Missing Image's checksum"),
    e.ChecksumMismatch: (400, "Checksum mismatch"),
    e.ChecksumAlreadySet: (409, "Cannot set this image checksum"),
    e.TarsumUnverifiable: (
        412,
        "X-Docker-Checksum-Payload not set. If you are using the Docker daemon, "
        "you should upgrade to version 0.10 or later",
    ),
    e.ChecksumInvalid: (400, "Invalid checksum"),
    e.ParentIncomplete: (400, "Parent image is being uploaded, retry later"),
    e.AncestryInvalid: (400, lambda x: x.reason if isinstance(x, e.AncestryInvalid) else ""),
    e.ImageHeldElsewhere: (
        409,
        lambda x: (
            f"Image {x.image_id} is being uploaded to another repository; "
            "retry once that upload is complete"
            if isinstance(x, e.ImageHeldElsewhere)
            else ""
        ),
    ),
    e.BlobUnknown: (404, "Layer not found"),
    e.RepositoryNameInvalid: (
        400,
        lambda x: f"Invalid repository name {x}" if isinstance(x, e.RepositoryNameInvalid) else "",
    ),
    e.TagNameInvalid: (400, f"Invalid tag name (must match {TAG_PATTERN})"),
    e.RepositoryUnknown: (404, "Repository not found"),
    e.TagUnknown: (404, "Tag not found"),
    e.TagBodyInvalid: (400, "Invalid data"),
    e.BodyTooLarge: (
        413,
        lambda x: (
            f"Request body larger than {x.limit_bytes} bytes"
            if isinstance(x, e.BodyTooLarge)
            else ""
        ),
    ),
    e.BodyIncomplete: (400, "Request body incomplete"),
    e.StorageFull: (507, "The registry's storage is full: nothing was stored; retry later"),
    e.DigestMismatch: (400, "Checksum mismatch"),
    e.DigestInvalid: (400, "Invalid digest"),
    e.Unauthenticated: (401, lambda x: x.reason if isinstance(x, e.Unauthenticated) else ""),
    e.AccessDenied: (403, lambda x: x.reason if isinstance(x, e.AccessDenied) else ""),
    e.ImageNotDeclared: (400, "This image does not belong to the repository"),
    # docker's login flow compares this whole body, a bare JSON string (v1 spec §5.12).
    e.UserExists: (400, "Username or email already exists"),
    e.UserInvalid: (400, lambda x: x.reason if isinstance(x, e.UserInvalid) else ""),
    e.UserUnknown: (404, "User not found"),
    e.SignupDisabled: (403, "Sign-up is disabled on this registry"),
    e.RequestInvalid: (400, lambda x: x.reason if isinstance(x, e.RequestInvalid) else ""),
    e.DatabaseUnavailable: (503, "Database unavailable, retry later"),
    e.StorageUnavailable: (503, "Storage unavailable: nothing was stored; retry later"),
    e.ServerBusy: (503, lambda x: x.reason if isinstance(x, e.ServerBusy) else ""),
    e.TooManyRequests: (429, lambda x: x.reason if isinstance(x, e.TooManyRequests) else ""),
    e.HostInvalid: (400, "Invalid Host header: expected host[:port]"),
    e.Retryable: (503, lambda x: x.reason if isinstance(x, e.Retryable) else ""),
    # v2's errors: no v1 endpoint raises them today; here so that none can escape as a 500.
    e.AuthChallenge: (401, lambda x: x.reason if isinstance(x, e.AuthChallenge) else ""),
    e.ContentRangeInvalid: (400, "Invalid Content-Range"),
    e.ManifestBlobUnknown: (400, "Manifest refers to an unknown blob"),
    e.ManifestInvalid: (400, lambda x: x.reason if isinstance(x, e.ManifestInvalid) else ""),
    e.ManifestUnknown: (404, "Manifest not found"),
    e.PaginationNumberInvalid: (400, "Invalid number of results requested"),
    e.SizeInvalid: (400, "Size mismatch"),
    e.StillReferenced: (409, "Still referenced by a manifest of this repository"),
    e.TooManyUploads: (429, "Too many open upload sessions"),
    e.UploadBusy: (429, "Another request is writing to this upload; retry"),
    e.UploadRangeInvalid: (416, "Chunk out of order"),
    e.UploadUnknown: (404, "Upload not found"),
}

# Errors whose body is the bare message as a JSON string instead of {"error": ...}.
_STRING_BODY: frozenset[type[e.RegistryError]] = frozenset({e.UserExists})
BASIC_CHALLENGE = 'Basic realm="registryd"'
TOKEN_CHALLENGE = "Token"


def error_response(status: int, message: str, *, bare: bool = False) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(message if bare else {"error": message}).encode(),
        content_type="application/json",
        headers=NO_CACHE,
    )


RenderedError = e.RegistryError | web.HTTPException


def render(
    request: web.Request, exc: RenderedError, challenge: str = BASIC_CHALLENGE
) -> web.Response:
    """The v1 response for ``exc`` (``challenge`` on a 401); an unmapped domain error is a
    programming error (TypeError, which the middleware answers as a 500)."""
    del request
    if isinstance(exc, web.HTTPException):
        response = error_response(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    for cls in type(exc).__mro__:
        if cls in TABLE:
            status, message = TABLE[cls]
            text = message if isinstance(message, str) else message(exc)
            response = error_response(status, text, bare=cls in _STRING_BODY)
            if status == 401:
                response.headers["WWW-Authenticate"] = challenge
            return response
    raise TypeError(f"no v1 rendering for {type(exc).__name__}") from exc


def render_internal(request: web.Request, request_id: str) -> web.Response:
    """A 500 in v1's shape, naming the request id the log has the traceback under."""
    del request
    return error_response(500, f"Internal server error (request id {request_id})")
