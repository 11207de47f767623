"""Mirrored manifests: by digest fetched once, by tag revalidated after the tag's TTL.

They are stored in the ordinary manifests and tags tables, so the tags list,
the catalog and the UI show them like pushed ones. A tag younger than
``tag_ttl_seconds`` is answered from the cache without asking the upstream;
an older one is confirmed with a HEAD (Docker Hub does not count HEADs against
its pull limit) and fetched again only when the upstream names another digest.
When the upstream cannot be asked, the cached tag is served stale, with a warning.
"""

from __future__ import annotations

import logging
import time

from registryd.db import manifest_queries, mirror_queries, repository_queries
from registryd.db.manifest_queries import ManifestRow
from registryd.digest import Digest, digest_of
from registryd.domain.manifests import Reference, parse_manifest, store_manifest
from registryd.errors import ManifestInvalid, ManifestUnknown
from registryd.mirror.errors import UpstreamError, UpstreamInvalid
from registryd.mirror.routing import Target
from registryd.mirror.service import Mirror

log = logging.getLogger(__name__)


async def get_manifest(mirror: Mirror, target: Target, reference: Reference) -> ManifestRow:
    """The manifest ``reference`` names in the mirrored repository; raise ManifestUnknown
    or an UpstreamError when it is neither cached nor obtainable."""
    name = target.upstream.namespace
    async with mirror.svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, target.local)
        if repo is None:
            cached, age = None, float("inf")
        elif isinstance(reference, Digest):
            cached, age = (
                await manifest_queries.fetch_manifest(conn, repo.repository_id, reference),
                0.0,
            )
        else:
            found = await mirror_queries.fetch_tagged_manifest_age(
                conn, repo.repository_id, reference
            )
            cached, age = found if found is not None else (None, float("inf"))
    if cached is not None and age < target.upstream.tag_ttl_seconds:
        mirror.metrics.hits.labels(name, "manifest").inc()
        return cached
    key = ("manifest", name, target.path, str(reference))
    return await mirror.single_flight(key, lambda: _refresh(mirror, target, reference, cached))


async def _refresh(
    mirror: Mirror, target: Target, reference: Reference, cached: ManifestRow | None
) -> ManifestRow:
    client = mirror.client(target.upstream)
    name = target.upstream.namespace
    if cached is not None:
        assert isinstance(reference, str)  # a cached digest never needs the upstream
        try:
            upstream_digest = await client.head_manifest(target.path, reference)
        except UpstreamError as exc:
            mirror.metrics.upstream_errors.labels(name).inc()
            mirror.metrics.stale.labels(name).inc()
            log.warning(
                "serving a stale tag: the upstream could not confirm it",
                extra={"fields": _fields(target, reference, reason=exc.reason)},
            )
            return cached
        if upstream_digest == cached.digest:
            async with mirror.svc.pool.acquire() as conn:
                repo = await repository_queries.fetch_repository(conn, target.local)
                if repo is not None:
                    await mirror_queries.touch_tag(conn, repo.repository_id, reference)
            mirror.metrics.hits.labels(name, "manifest").inc()
            log.info(
                "upstream confirmed a cached tag",
                extra={"fields": _fields(target, reference, digest=str(cached.digest))},
            )
            return cached
    mirror.metrics.misses.labels(name, "manifest").inc()
    started = time.monotonic()
    try:
        body, content_type, _ = await client.get_manifest(target.path, str(reference))
    except ManifestUnknown:
        raise
    except UpstreamError as exc:
        mirror.metrics.upstream_errors.labels(name).inc()
        if cached is not None:
            mirror.metrics.stale.labels(name).inc()
            log.warning(
                "serving a stale tag: the upstream could not send it",
                extra={"fields": _fields(target, reference, reason=exc.reason)},
            )
            return cached
        raise
    manifest = await _store(mirror, target, reference, body, content_type)
    log.info(
        "upstream fetch",
        extra={
            "fields": _fields(
                target,
                reference,
                kind="manifest",
                digest=str(manifest.digest),
                bytes=len(body),
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
        },
    )
    return manifest


async def _store(
    mirror: Mirror, target: Target, reference: Reference, body: bytes, content_type: str | None
) -> ManifestRow:
    name = target.upstream.namespace
    if isinstance(reference, Digest):
        digest = digest_of(body, reference.algorithm)
        if digest != reference:
            mirror.metrics.upstream_errors.labels(name).inc()
            raise UpstreamInvalid(name, f"manifest digest is {digest}, not {reference}")
    else:
        digest = digest_of(body)
    try:
        parsed = parse_manifest(body, content_type)
    except ManifestInvalid as exc:
        mirror.metrics.upstream_errors.labels(name).inc()
        raise UpstreamInvalid(name, f"cannot cache this manifest: {exc.reason}") from None
    async with mirror.svc.pool.acquire() as conn, conn.transaction():
        repo = await repository_queries.ensure_repository(conn, target.local)
        # A tag's updated_at is set here: the moment the upstream confirmed it.
        tags = [] if isinstance(reference, Digest) else [reference]
        await store_manifest(conn, repo.repository_id, digest, body, parsed, tags)
    return ManifestRow(digest=digest, media_type=parsed.media_type, body=body)


def _fields(target: Target, reference: Reference, **more: object) -> dict[str, object]:
    return {
        "upstream": target.upstream.namespace,
        "repository": target.path,
        "reference": str(reference),
        **more,
    }
