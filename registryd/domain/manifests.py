"""v2 manifests and tags (spec end-3, end-7 … end-9, end-12): stored byte-exact.

A manifest is kept with the exact bytes and media type it was pushed with,
because clients verify its digest over those bytes and choose their parser
by the ``Content-Type`` we answer. What a manifest refers to must already be in
the repository (MANIFEST_BLOB_UNKNOWN), except its ``subject``, which OCI 1.1
lets point at a manifest pushed later.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registryd.db import queries
from registryd.db.queries import ManifestRow, ReferrerRow, RepositoryRow
from registryd.digest import Digest, digest_of
from registryd.domain.services import Services
from registryd.errors import (
    DigestInvalid,
    DigestMismatch,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    PaginationNumberInvalid,
    RepositoryUnknown,
)
from registryd.gc import hooks as gc_hooks
from registryd.names import RepositoryName, parse_tag

# Spec end-7: registries SHOULD accept manifests of at least 4 MB.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

# A tag or a digest, as it appears in /manifests/<reference>.
Reference = Digest | str


def parse_reference(text: str) -> Reference:
    """A digest if it has an algorithm prefix, else a tag; raise DigestInvalid/TagNameInvalid."""
    if ":" in text:
        return Digest.parse(text)
    return parse_tag(text)


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    blobs: list[Digest]  # config and layers: must be blobs of the repository
    children: list[Digest]  # index entries: must be manifests of the repository
    subject: Digest | None
    artifact_type: str | None  # what the referrers API reports
    annotations: dict[str, Any] | None


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} is not a descriptor")
    if not isinstance(value.get("mediaType"), str):
        raise ManifestInvalid(f"{where} has no mediaType")
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where} has no valid size")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where} has no digest")
    try:
        Digest.parse(digest)
    except DigestInvalid:
        raise ManifestInvalid(f"{where} has an invalid digest {digest!r}") from None
    return value


def _descriptors(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list):
        raise ManifestInvalid(f"{key} must be a list")
    return [_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items)]


def _media_type(data: dict[str, Any], content_type: str | None) -> str:
    declared = data.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")
    # Parameters of Content-Type are ignored (spec: "SHOULD ignore").
    header = content_type.split(";", 1)[0].strip().lower() if content_type else ""
    if declared and header and header != declared and header != "application/json":
        raise ManifestInvalid(f"Content-Type {header} differs from mediaType {declared}")
    media_type = declared or header
    if media_type not in IMAGE_MANIFEST_TYPES | INDEX_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type or '(none)'!r}")
    return media_type


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Check the manifest's shape and collect what it refers to; raise ManifestInvalid."""
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ManifestInvalid("not JSON") from None
    if not isinstance(data, dict):
        raise ManifestInvalid("not a JSON object")
    if data.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    media_type = _media_type(data, content_type)
    artifact_type = data.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalid("artifactType must be a string")
    annotations = data.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise ManifestInvalid("annotations must be an object")
    subject = None
    if "subject" in data:
        subject = Digest.parse(_descriptor(data["subject"], "subject")["digest"])
    blobs: list[Digest] = []
    children: list[Digest] = []
    if media_type in IMAGE_MANIFEST_TYPES:
        config = _descriptor(data.get("config"), "config")
        layers = _descriptors(data, "layers")
        blobs.append(Digest.parse(config["digest"]))
        # Non-distributable layers (with foreign "urls") are not pushed to us.
        blobs += [Digest.parse(layer["digest"]) for layer in layers if not layer.get("urls")]
        if artifact_type is None:
            artifact_type = config["mediaType"]
    else:
        children = [Digest.parse(m["digest"]) for m in _descriptors(data, "manifests")]
    return ParsedManifest(
        media_type=media_type,
        blobs=list(dict.fromkeys(blobs)),
        children=list(dict.fromkeys(children)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
    )


async def put_manifest(
    svc: Services,
    name: RepositoryName,
    reference: Reference,
    body: bytes,
    content_type: str | None,
) -> tuple[Digest, ParsedManifest]:
    """Store the manifest (and point the tag at it); return its digest and what it says.

    A digest reference must be the digest of ``body`` (DigestInvalid otherwise).
    Raises ManifestInvalid, ManifestBlobUnknown.
    """
    parsed = parse_manifest(body, content_type)
    if isinstance(reference, Digest):
        digest = digest_of(body, reference.algorithm)
        if digest != reference:
            raise DigestMismatch(str(reference), str(digest))
    else:
        digest = digest_of(body)
    async with svc.pool.acquire() as conn, conn.transaction():
        repo = await queries.ensure_repository(conn, name)
        # Hold what the manifest refers to until it commits, so that garbage
        # collection cannot remove it after the check below (gc/hooks.py).
        await gc_hooks.hold_manifest_inputs(
            conn, repo.repository_id, digest, parsed.blobs, parsed.children
        )
        missing = await queries.fetch_missing_repository_blobs(
            conn, repo.repository_id, parsed.blobs
        )
        missing += await queries.fetch_missing_manifests(conn, repo.repository_id, parsed.children)
        if missing:
            raise ManifestBlobUnknown(str(missing[0]))
        await queries.upsert_manifest(
            conn,
            repo.repository_id,
            digest,
            parsed.media_type,
            body,
            parsed.subject,
            parsed.artifact_type,
            parsed.annotations,
        )
        await queries.insert_manifest_references(
            conn, repo.repository_id, digest, parsed.blobs + parsed.children
        )
        if not isinstance(reference, Digest):
            await queries.upsert_v2_tag(conn, repo.repository_id, reference, digest)
    return digest, parsed


async def get_manifest(svc: Services, name: RepositoryName, reference: Reference) -> ManifestRow:
    """The stored manifest; raise ManifestUnknown."""
    async with svc.pool.acquire() as conn:
        repo = await queries.fetch_repository(conn, name)
        manifest = None
        if repo is not None:
            if isinstance(reference, Digest):
                manifest = await queries.fetch_manifest(conn, repo.repository_id, reference)
            else:
                manifest = await queries.fetch_tagged_manifest(conn, repo.repository_id, reference)
    if manifest is None:
        raise ManifestUnknown(str(reference))
    return manifest


async def delete_manifest(svc: Services, name: RepositoryName, reference: Reference) -> None:
    """By digest: the manifest and its tags; by tag: only the tag. Raise ManifestUnknown."""
    async with svc.pool.acquire() as conn:
        repo = await queries.fetch_repository(conn, name)
        deleted = False
        if repo is not None:
            if isinstance(reference, Digest):
                deleted = await queries.delete_manifest(conn, repo.repository_id, reference)
            else:
                deleted = await queries.delete_v2_tag(conn, repo.repository_id, reference)
    if not deleted:
        raise ManifestUnknown(str(reference))


def parse_page_size(text: str | None, maximum: int) -> int | None:
    """The ``n`` query parameter: None when absent; raise PaginationNumberInvalid."""
    if text is None:
        return None
    if not text.isdigit() or len(text) > 9:
        raise PaginationNumberInvalid(text)
    return min(int(text), maximum)


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool  # another page follows
    last: str | None = None  # where the next page starts after (default: the last item)


async def list_tags(svc: Services, name: RepositoryName, last: str | None, limit: int) -> Page:
    """Tags after ``last`` in byte order, at most ``limit``; raise RepositoryUnknown."""
    async with svc.pool.acquire() as conn:
        repo = await queries.fetch_repository(conn, name)
        if repo is None:
            raise RepositoryUnknown()
        tags = await queries.fetch_v2_tags_page(conn, repo.repository_id, last, limit + 1)
    return Page(tags[:limit], len(tags) > limit)


async def list_repositories(
    svc: Services, last: str | None, limit: int, visible: Callable[[RepositoryRow], bool]
) -> Page:
    """Names of ``visible`` repositories after ``last`` in byte order, at most ``limit``.

    Invisible ones are skipped, so a page may be shorter; ``more`` still tells.
    """
    async with svc.pool.acquire() as conn:
        rows = await queries.fetch_repositories_page(conn, last, limit + 1)
    page = rows[:limit]
    names = [str(row.name) for row in page if visible(row)]
    return Page(names, len(rows) > limit, str(page[-1].name) if page else None)


async def list_referrers(
    svc: Services, name: RepositoryName, subject: Digest, artifact_type: str | None
) -> list[ReferrerRow]:
    """Manifests of the repository whose subject is ``subject`` (empty if none, never unknown)."""
    async with svc.pool.acquire() as conn:
        repo = await queries.fetch_repository(conn, name)
        if repo is None:
            return []
        return await queries.fetch_referrers(conn, repo.repository_id, subject, artifact_type)
