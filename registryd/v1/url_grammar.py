"""The v1 URL grammar: the names a v1 URL carries.

Invalid names are 404 on reads (they cannot exist), 400 on writes.
"""

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


# What may follow a repository name in a /v1/repositories/ URL.
_SUFFIXES = frozenset({"images", "auth", "properties", "tags"})


def name_of_deep_path(path: str) -> list[str]:
    """The name segments of ``<name>[/<suffix>]`` once a known suffix is taken off."""
    segments = path.rstrip("/").split("/")
    if len(segments) > 2 and segments[-2] == "tags":
        return segments[:-2]
    if segments[-1] in _SUFFIXES:
        return segments[:-1]
    return segments


def tag_in_path(request: web.Request, *, reading: bool) -> str:
    raw = request.match_info["tag"]
    try:
        return parse_tag(raw)
    except TagNameInvalid:
        if reading:
            raise TagUnknown(raw) from None
        raise
