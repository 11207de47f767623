"""v2 manifests (spec end-3, end-7, end-9): stored byte-exact.

A manifest is kept with the exact bytes and media type it was pushed with,
because clients verify its digest over those bytes and choose their parser
by the ``Content-Type`` we answer. What a manifest refers to must already be in
the repository (MANIFEST_BLOB_UNKNOWN), except its ``subject``, which OCI 1.1
lets point at a manifest pushed later. Sizes in descriptors must be those of the
stored content. The check and the insert hold the referred rows FOR SHARE, and
deletes of blobs and manifests that a manifest of the repository refers to are
refused (StillReferenced), so no image can lose a part it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from registryd import jsonbody
from registryd.db import (
    gc_holds,
    manifest_queries,
    reference_queries,
    repository_queries,
    v2_tag_queries,
)
from registryd.db.conn import Conn
from registryd.db.manifest_queries import ManifestRow
from registryd.digest import Digest, digest_of
from registryd.domain import repositories
from registryd.domain.services import Services
from registryd.errors import (
    DigestInvalid,
    DigestMismatch,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    StillReferenced,
)
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
    sizes: dict[Digest, int]  # what the descriptors of blobs and children say
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
    data: Any = jsonbody.parse_or_raise(body, ManifestInvalid, syntax_reason="not JSON")
    if not isinstance(data, dict):
        raise ManifestInvalid("not a JSON object")
    version = data.get("schemaVersion")
    # The integer 2: json reads 2.0 as a float equal to 2, and true as 1.
    if type(version) is not int or version != 2:
        raise ManifestInvalid("schemaVersion must be the integer 2")
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
    sizes: dict[Digest, int] = {}

    def refer(descriptor: dict[str, Any], into: list[Digest]) -> None:
        digest = Digest.parse(descriptor["digest"])
        if sizes.setdefault(digest, descriptor["size"]) != descriptor["size"]:
            raise ManifestInvalid(f"{digest} is given two different sizes")
        into.append(digest)

    if media_type in IMAGE_MANIFEST_TYPES:
        config = _descriptor(data.get("config"), "config")
        layers = _descriptors(data, "layers")
        refer(config, blobs)
        for layer in layers:
            # Non-distributable layers (with foreign "urls") are not pushed to us.
            if not layer.get("urls"):
                refer(layer, blobs)
        if artifact_type is None:
            artifact_type = config["mediaType"]
    else:
        for child in _descriptors(data, "manifests"):
            refer(child, children)
    return ParsedManifest(
        media_type=media_type,
        blobs=list(dict.fromkeys(blobs)),
        children=list(dict.fromkeys(children)),
        sizes=sizes,
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
    tags: Sequence[str] = (),
) -> tuple[Digest, ParsedManifest]:
    """Store the manifest (and point the tag, and ``tags``, at it); return its digest
    and what it says.

    A digest reference must be the digest of ``body`` (DigestInvalid otherwise).
    Raises ManifestInvalid (also for a descriptor whose size is not the stored
    content's: the content is known, the manifest is what is wrong),
    ManifestBlobUnknown.
    """
    parsed = parse_manifest(body, content_type)
    if isinstance(reference, Digest):
        digest = digest_of(body, reference.algorithm)
        if digest != reference:
            raise DigestMismatch(str(reference), str(digest))
    else:
        digest = digest_of(body)
    async with svc.pool.acquire() as conn, conn.transaction():
        repo = await repository_queries.ensure_repository(conn, name)
        # Hold what the manifest refers to until it commits, so that garbage
        # collection cannot remove it after the check below (db/gc_holds.py).
        await gc_holds.hold_manifest_inputs(
            conn, repo.repository_id, digest, parsed.blobs, parsed.children
        )
        # Locked FOR SHARE until commit: a concurrent delete of one of them waits for us,
        # then finds this manifest referring to it.
        stored = await reference_queries.lock_repository_blob_sizes(
            conn, repo.repository_id, parsed.blobs
        )
        stored |= await reference_queries.lock_manifest_sizes(
            conn, repo.repository_id, parsed.children
        )
        for ref in parsed.blobs + parsed.children:
            if ref not in stored:
                raise ManifestBlobUnknown(str(ref))
            if stored[ref] != parsed.sizes[ref]:
                raise ManifestInvalid(
                    f"descriptor of {ref} says size {parsed.sizes[ref]}, "
                    f"the stored content has {stored[ref]} bytes"
                )
        if not isinstance(reference, Digest):
            tags = [reference, *tags]
        await store_manifest(conn, repo.repository_id, digest, body, parsed, tags)
    return digest, parsed


async def store_manifest(
    conn: Conn,
    repository_id: int,
    digest: Digest,
    body: bytes,
    parsed: ParsedManifest,
    tags: Sequence[str],
) -> None:
    """Write a checked manifest, what it refers to and its tags (in the caller's transaction)."""
    await manifest_queries.upsert_manifest(
        conn,
        repository_id,
        digest,
        parsed.media_type,
        body,
        parsed.subject,
        parsed.artifact_type,
        parsed.annotations,
    )
    await manifest_queries.insert_manifest_references(
        conn, repository_id, digest, parsed.blobs + parsed.children
    )
    for tag in tags:
        await v2_tag_queries.upsert_v2_tag(conn, repository_id, tag, digest)


async def get_manifest(svc: Services, name: RepositoryName, reference: Reference) -> ManifestRow:
    """The stored manifest; raise ManifestUnknown."""
    repo = await repositories.resolve(svc, name)
    manifest = None
    if repo is not None and svc.access is not None:  # the per-process cache, when it is on
        manifest = await svc.access.manifest(repo.repository_id, reference)
    elif repo is not None:
        async with svc.pool.acquire() as conn:
            if isinstance(reference, Digest):
                manifest = await manifest_queries.fetch_manifest(
                    conn, repo.repository_id, reference
                )
            else:
                manifest = await manifest_queries.fetch_tagged_manifest(
                    conn, repo.repository_id, reference
                )
    if manifest is None:
        raise ManifestUnknown(str(reference))
    return manifest


async def delete_manifest(svc: Services, name: RepositoryName, reference: Reference) -> None:
    """By digest: the manifest and its tags; by tag: only the tag. Raise ManifestUnknown,
    or StillReferenced for a manifest an index of the repository refers to."""
    async with svc.pool.acquire() as conn, conn.transaction():
        repo = await repository_queries.fetch_repository(conn, name)
        deleted = False
        if repo is not None:
            if isinstance(reference, Digest):
                # Lock first, then look (a new snapshot): an index PUT that holds the row
                # FOR SHARE has committed by then, and its reference is seen.
                if await reference_queries.lock_manifest(conn, repo.repository_id, reference):
                    referrer = await reference_queries.fetch_referencing_manifest(
                        conn, repo.repository_id, reference
                    )
                    if referrer is not None:
                        raise StillReferenced(str(reference), str(referrer))
                    deleted = await manifest_queries.delete_manifest(
                        conn, repo.repository_id, reference
                    )
            else:
                deleted = await v2_tag_queries.delete_v2_tag(conn, repo.repository_id, reference)
    if not deleted:
        raise ManifestUnknown(str(reference))
