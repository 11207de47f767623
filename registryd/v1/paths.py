"""Names taken from v1 URLs. Invalid names are 404 on reads (they cannot exist), 400 on writes."""

from __future__ import annotations

from aiohttp import web

from registryd.errors import RepositoryNameInvalid, RepositoryUnknown, TagNameInvalid, TagUnknown
from registryd.names import RepositoryName, parse_tag


def repository_in_path(request: web.Request, *, reading: bool) -> RepositoryName:
    """``[<namespace>/]<repository>`` of the URL; one segment means ``library``."""
    try:
        return RepositoryName.parse(
            request.match_info.get("namespace"), request.match_info["repository"]
        )
    except RepositoryNameInvalid:
        if reading:
            raise RepositoryUnknown() from None
        raise


def tag_in_path(request: web.Request, *, reading: bool) -> str:
    raw = request.match_info["tag"]
    try:
        return parse_tag(raw)
    except TagNameInvalid:
        if reading:
            raise TagUnknown(raw) from None
        raise
