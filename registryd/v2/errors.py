"""Domain errors as v2 responses: ``{"errors": [{"code", "message", "detail"}]}``.

Codes and statuses follow the OCI distribution spec ("Error Codes") and what
distribution answers for the same cases; TAG_INVALID and PAGINATION_NUMBER_INVALID
are the legacy Docker codes clients also know.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from registryd import errors as e
from registryd.v2.access import challenge_header
from registryd.v2.url_grammar import upload_url

_Detail = Callable[[Any], Any]


def _none(_: Any) -> Any:
    return None


def _reason(exc: Any) -> Any:
    return exc.reason


# domain error -> (status, code, message, detail from the error's data)
TABLE: dict[type[e.RegistryError], tuple[int, str, str, _Detail]] = {
    e.RepositoryNameInvalid: (
        400,
        "NAME_INVALID",
        "invalid repository name",
        lambda x: {"name": x.name, "reason": x.reason},
    ),
    e.RepositoryUnknown: (404, "NAME_UNKNOWN", "repository name not known to registry", _none),
    e.TagNameInvalid: (400, "TAG_INVALID", "invalid tag", lambda x: {"tag": x.tag}),
    e.DigestInvalid: (400, "DIGEST_INVALID", "invalid digest", lambda x: {"digest": x.text}),
    e.DigestMismatch: (
        400,
        "DIGEST_INVALID",
        "provided digest did not match uploaded content",
        lambda x: {"expected": x.expected, "actual": x.actual},
    ),
    e.BlobUnknown: (404, "BLOB_UNKNOWN", "blob unknown to registry", lambda x: str(x) or None),
    e.UploadUnknown: (404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", _none),
    e.UploadRangeInvalid: (
        416,
        "BLOB_UPLOAD_INVALID",
        "chunk is out of order: it must start where the upload ends",
        lambda x: {"size": x.size_bytes},
    ),
    e.ContentRangeInvalid: (400, "BLOB_UPLOAD_INVALID", "invalid Content-Range", _reason),
    # Retryable: the other request ends (or its process is found dead) soon.
    e.UploadBusy: (
        429,
        "TOOMANYREQUESTS",
        "another request is writing to this upload; retry",
        _none,
    ),
    e.TooManyUploads: (
        429,
        "TOOMANYREQUESTS",
        "too many open upload sessions: finish or cancel some first",
        lambda x: {"limit": x.limit},
    ),
    e.StorageFull: (
        507,
        "BLOB_UPLOAD_INVALID",
        "the registry's storage is full: nothing was stored; retry later",
        _none,
    ),
    e.StillReferenced: (
        409,
        "DENIED",
        "still referenced by a manifest of this repository: delete that manifest first",
        lambda x: {"digest": x.digest, "manifest": x.referrer},
    ),
    e.SizeInvalid: (400, "SIZE_INVALID", "provided length did not match content length", _none),
    e.BodyIncomplete: (400, "SIZE_INVALID", "request body incomplete", _none),
    e.BodyTooLarge: (
        413,
        "SIZE_INVALID",
        "request body too large",
        lambda x: {"limit": x.limit_bytes},
    ),
    e.ManifestUnknown: (
        404,
        "MANIFEST_UNKNOWN",
        "manifest unknown to registry",
        lambda x: {"reference": x.reference},
    ),
    e.TagUnknown: (404, "MANIFEST_UNKNOWN", "manifest unknown to registry", _none),
    e.ManifestInvalid: (400, "MANIFEST_INVALID", "manifest invalid", lambda x: x.reason),
    e.ManifestBlobUnknown: (
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "manifest references a manifest or blob unknown to registry",
        lambda x: {"digest": x.digest},
    ),
    e.PaginationNumberInvalid: (
        400,
        "PAGINATION_NUMBER_INVALID",
        "invalid number of results requested",
        lambda x: {"n": x.text},
    ),
    e.RequestInvalid: (400, "UNSUPPORTED", "invalid request", _reason),
    e.HostInvalid: (400, "UNSUPPORTED", "invalid Host header: expected host[:port]", _none),
    e.AccessDenied: (403, "DENIED", "requested access to the resource is denied", _reason),
    e.Unauthenticated: (401, "UNAUTHORIZED", "authentication required", _reason),
    e.AuthChallenge: (401, "UNAUTHORIZED", "authentication required", _reason),
    # distribution's codes for these (errcode.ErrorCodeUnavailable, ErrorCodeTooManyRequests).
    e.DatabaseUnavailable: (503, "UNAVAILABLE", "service unavailable", _reason),
    e.ServerBusy: (503, "UNAVAILABLE", "service unavailable", _reason),
    e.StorageUnavailable: (503, "UNAVAILABLE", "storage unavailable: nothing was stored", _reason),
    e.TooManyRequests: (429, "TOOMANYREQUESTS", "too many requests", _reason),
    e.Retryable: (503, "UNAVAILABLE", "service unavailable", _reason),
    # v1's errors: no v2 endpoint raises them today; here so that none can escape as a 500.
    e.AncestryInvalid: (400, "UNSUPPORTED", "invalid image ancestry", _reason),
    e.ChecksumAlreadySet: (409, "DENIED", "image checksum already set", _none),
    e.ChecksumInvalid: (400, "DIGEST_INVALID", "invalid checksum", _none),
    e.ChecksumMismatch: (400, "DIGEST_INVALID", "checksum mismatch", _none),
    e.ChecksumMissing: (400, "DIGEST_INVALID", "checksum missing", _none),
    e.ImageAlreadyExists: (409, "DENIED", "image already exists", _none),
    e.ImageBeingUploaded: (400, "UNSUPPORTED", "image is being uploaded, retry later", _none),
    e.ImageChanged: (409, "DENIED", "image changed while its layer was uploading", _none),
    e.ImageHeldElsewhere: (409, "DENIED", "image is being uploaded to another repository", _none),
    e.ImageIdInvalid: (404, "BLOB_UNKNOWN", "image unknown", _none),
    e.ImageJsonInvalid: (400, "UNSUPPORTED", "invalid image JSON", _reason),
    e.ImageNotDeclared: (400, "DENIED", "image does not belong to the repository", _none),
    e.ImageUnknown: (404, "BLOB_UNKNOWN", "image unknown", _none),
    e.LayerNotUploaded: (400, "BLOB_UNKNOWN", "layer not uploaded", _none),
    e.ParentIncomplete: (400, "BLOB_UNKNOWN", "parent image is being uploaded", _none),
    e.ParentUnknown: (400, "BLOB_UNKNOWN", "parent image unknown", _none),
    e.SignupDisabled: (403, "DENIED", "sign-up is disabled", _none),
    e.TagBodyInvalid: (400, "TAG_INVALID", "invalid tag body", _none),
    e.TarsumUnverifiable: (412, "UNSUPPORTED", "tarsum cannot be verified", _none),
    e.UserExists: (400, "DENIED", "username or email already exists", _none),
    e.UserInvalid: (400, "UNSUPPORTED", "invalid user", _reason),
    e.UserUnknown: (404, "NAME_UNKNOWN", "user unknown", _none),
}

# aiohttp's own errors (no route, wrong method) in v2 words.
_HTTP_CODES = {404: "NAME_UNKNOWN", 405: "UNSUPPORTED", 413: "SIZE_INVALID"}


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


# Seconds a client waits before retrying a 429.
RETRY_AFTER_SECONDS = 1


def _extra_headers(request: web.Request, exc: e.RegistryError) -> dict[str, str] | None:
    if isinstance(exc, e.UploadBusy | e.TooManyUploads):
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, e.UploadRangeInvalid) and exc.size_bytes is not None:
        # Where the session ends, so the client resumes there (as a status GET says).
        headers = {"Range": f"0-{max(exc.size_bytes - 1, 0)}"}
        if (upload_id := request.match_info.get("upload_id")) is not None:
            headers["Location"] = upload_url(request, upload_id)
            headers["Docker-Upload-UUID"] = upload_id
        return headers
    return None


def render(request: web.Request, exc: e.RegistryError | web.HTTPException) -> web.Response:
    """The v2 response for ``exc``; an unmapped domain error is a programming error (500)."""
    if isinstance(exc, e.AuthChallenge):
        try:
            header = {"WWW-Authenticate": challenge_header(request, exc)}
        except e.HostInvalid as bad_host:
            return render(request, bad_host)
        return error_response(401, "UNAUTHORIZED", "authentication required", exc.reason, header)
    if isinstance(exc, web.HTTPException):
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = _HTTP_CODES.get(exc.status, "UNSUPPORTED")
        return error_response(exc.status, code, exc.reason.lower(), headers=headers)
    for cls in type(exc).__mro__:
        if cls in TABLE:
            status, code, message, detail = TABLE[cls]
            return error_response(status, code, message, detail(exc), _extra_headers(request, exc))
    raise TypeError(f"no v2 rendering for {type(exc).__name__}") from exc


def render_internal(request: web.Request, request_id: str) -> web.Response:
    """A 500 in v2's shape (spec "Error Codes": UNKNOWN), naming the request id the log has
    the traceback under."""
    del request
    return error_response(
        500, "UNKNOWN", "unknown error", {"request_id": request_id, "reason": "internal error"}
    )
