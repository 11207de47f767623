"""Which requests are for a mirrored repository, and which upstream repository that is.

Two spellings reach one cached repository ``<namespace>/<upstream path>``:
the namespace prefix (``/v2/docker.io/library/alpine/...``) and containerd's
mirror protocol (``/v2/library/alpine/...?ns=docker.io``, the ``ns`` parameter
of the distribution spec). Docker Hub's one-segment names mean ``library/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from registryd.config import Upstream
from registryd.names import RepositoryName

NS_PARAMETER = "ns"


@dataclass(frozen=True)
class Target:
    upstream: Upstream
    # The repository's name upstream (``library/alpine``).
    path: str
    # Where it is cached here (``docker.io`` / ``library/alpine``).
    local: RepositoryName


def find_target(request: web.Request, upstreams: dict[str, Upstream]) -> Target | None:
    """The mirrored repository the request's ``<name>`` means, or None for a local one.

    Raises RepositoryNameInvalid when the upstream path breaks the name grammar.
    """
    raw = request.match_info.get("name")
    if raw is None:
        return None
    ns = request.query.get(NS_PARAMETER)
    upstream = upstreams.get(ns) if ns is not None else None
    if upstream is not None:
        return target_of(upstream, raw)
    first, slash, path = raw.partition("/")
    upstream = upstreams.get(first)
    if upstream is None or not slash:
        return None
    return target_of(upstream, path)


def target_of(upstream: Upstream, path: str) -> Target:
    """``path`` of ``upstream``; raise RepositoryNameInvalid."""
    if upstream.library_prefix and "/" not in path:
        path = "library/" + path
    # The grammar of the whole local name covers the upstream path's.
    checked = RepositoryName.parse_oci(f"{upstream.namespace}/{path}")
    return Target(upstream, path, checked)
