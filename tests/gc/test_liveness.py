"""Each liveness rule: what a collection keeps and what it removes (rows and files)."""

from __future__ import annotations

import json

import asyncpg

from registryd.config import Settings
from registryd.domain.services import Services
from tests.conftest import Client
from tests.gc.conftest import age_everything, blob_rows, collect, stored
from tests.support.content import sha256
from tests.support.images import make_chain, make_image, random_bytes
from tests.support.v1client import V1Client
from tests.support.v2client import OCI_INDEX, V2Client, descriptor, image_manifest

CONFIG = json.dumps({"architecture": "amd64", "os": "linux"}).encode()  # as push_image


async def push_image(v2: V2Client, name: str, tag: str, layers: list[bytes]) -> str:
    manifest = await v2.push_image(name, tag, layers)
    return sha256(manifest)


async def test_tagged_image_stays_and_deleted_manifest_goes_with_its_blobs(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    shared, own = random_bytes(3000, 1), random_bytes(4000, 2)
    keep = await push_image(v2, "alice/keep", "v1", [shared])
    drop = await push_image(v2, "alice/drop", "v1", [shared, own])
    await age_everything(db)
    report = await collect(svc)
    assert report.blobs == []
    assert report.manifests == []

    status, _, _ = await v2.call("DELETE", f"/v2/alice/drop/manifests/{drop}")
    assert status == 202
    report = await collect(svc)
    assert sorted(d for d, _ in report.blobs) == [sha256(own)]  # config + shared still in keep
    assert report.bytes_freed == len(own)
    assert not stored(settings, sha256(own))
    assert stored(settings, sha256(shared))
    assert stored(settings, sha256(CONFIG))
    # What is left of alice/drop is nothing; alice/keep still pulls completely.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM v2_repository_blobs l JOIN repositories r "
            "USING (repository_id) WHERE r.name = 'drop'"
        )
        == 0
    )
    status, body, _ = await v2.call("GET", f"/v2/alice/keep/manifests/{keep}")
    assert status == 200
    for layer in json.loads(body)["layers"]:
        status, data, _ = await v2.call("GET", f"/v2/alice/keep/blobs/{layer['digest']}")
        assert status == 200
        assert sha256(data) == layer["digest"]


async def test_a_blob_younger_than_the_grace_period_stays(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    layer = random_bytes(1000, 3)
    digest = await v2.push_blob("alice/app", layer)  # its manifest has not come yet
    report = await collect(svc, grace=3600)
    assert report.blobs == []
    assert report.links == 0
    assert stored(settings, digest)
    # The manifest still comes within the grace period: accepted, as the layer is there.
    status, body, _ = await v2.push_manifest("alice/app", "v1", image_manifest(layer, [layer]))
    assert status == 201, body

    orphan = await v2.push_blob("alice/app", random_bytes(500, 4))
    await age_everything(db)
    report = await collect(svc, grace=3600)
    assert [d for d, _ in report.blobs] == [orphan]  # no manifest came for it
    assert report.links == 1
    assert stored(settings, digest)
    assert not stored(settings, orphan)


async def test_untagged_manifests_are_kept_by_default_and_expire_when_configured(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    layer = random_bytes(2000, 5)
    digest = await push_image(v2, "alice/app", "v1", [layer])
    status, _, _ = await v2.call("DELETE", "/v2/alice/app/manifests/v1")  # the tag only
    assert status == 202
    tagged = await push_image(v2, "alice/app", "v2", [random_bytes(100, 6)])
    await age_everything(db)
    assert (await collect(svc)).manifests == []  # gc_untagged_seconds = 0: kept
    assert await db.fetchval("SELECT count(*) FROM v2_manifests") == 2

    report = await collect(svc, untagged=60)
    assert report.manifests == [f"alice/app@{digest}"]
    assert [d for d, _ in report.blobs] == [sha256(layer)]
    status, _, _ = await v2.call("GET", f"/v2/alice/app/manifests/{tagged}")
    assert status == 200
    # A young untagged manifest stays until it is old enough.
    young = sha256(image_manifest(CONFIG, [layer + b"x"]))
    await v2.push_blob("alice/app", layer + b"x")
    status, _, _ = await v2.push_manifest(
        "alice/app", young, image_manifest(CONFIG, [layer + b"x"])
    )
    assert status == 201
    assert (await collect(svc, untagged=60)).manifests == []


async def test_children_of_a_live_index_stay_and_go_with_it(
    client: Client, svc: Services, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    children = []
    for i in range(2):
        layer = random_bytes(100, 10 + i)
        for blob in (CONFIG, layer):
            await v2.push_blob("alice/multi", blob)
        body = image_manifest(CONFIG, [layer])
        status, _, _ = await v2.push_manifest("alice/multi", sha256(body), body)
        assert status == 201
        children.append(body)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                descriptor(c, "application/vnd.oci.image.manifest.v1+json") for c in children
            ],
        }
    ).encode()
    status, _, _ = await v2.push_manifest("alice/multi", "latest", index, OCI_INDEX)
    assert status == 201
    await age_everything(db)
    report = await collect(svc, untagged=60)
    assert report.manifests == []  # untagged children, but their index is tagged

    status, _, _ = await v2.call("DELETE", f"/v2/alice/multi/manifests/{sha256(index)}")
    assert status == 202
    report = await collect(svc, untagged=60)
    assert sorted(report.manifests) == sorted(f"alice/multi@{sha256(c)}" for c in children)
    assert await blob_rows(db) == set()


async def test_referrers_live_and_die_with_their_subject(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    subject = await push_image(v2, "alice/app", "v1", [random_bytes(100, 20)])
    signature = random_bytes(64, 21)
    await v2.push_blob("alice/app", signature)
    referrer = image_manifest(
        CONFIG,
        [signature],
        subject={
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": subject,
            "size": 1,
        },
    )
    status, _, _ = await v2.push_manifest("alice/app", sha256(referrer), referrer)
    assert status == 201
    await age_everything(db)
    assert (await collect(svc)).manifests == []  # untagged, but its subject lives

    status, _, _ = await v2.call("DELETE", f"/v2/alice/app/manifests/{subject}")
    assert status == 202
    report = await collect(svc)
    assert report.manifests == [f"alice/app@{sha256(referrer)}"]
    assert not stored(settings, sha256(signature))
    assert await blob_rows(db) == set()


async def test_v1_images_live_through_tags_ancestry_and_declarations(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v1 = V1Client(client)
    chain = make_chain("gc-chain", [random_bytes(500, 30 + i) for i in range(3)])
    await v1.push("alice/app", "latest", chain)
    lonely = make_image("gc-lonely", random_bytes(400, 40))
    await v1.push_image(lonely)  # complete, but neither tagged nor declared
    declared = make_image("gc-declared", random_bytes(400, 41))
    await v1.push_image(declared)
    status, _, _ = await v1.call(
        "PUT", "/v1/repositories/alice/other/", data=json.dumps([{"id": declared.image_id}])
    )
    assert status in (200, 201)
    await age_everything(db)
    report = await collect(svc)
    assert report.v1_images == [lonely.image_id]
    assert not stored(settings, sha256(lonely.layer))
    pulled = await v1.pull("alice/app", "latest")  # the whole ancestry is still there
    assert [p[2] for p in pulled] == [i.layer for i in chain]

    # Deleting the repository frees the whole chain, leaf first, in one run.
    status, _, _ = await v1.call("DELETE", "/v1/repositories/alice/app/")
    assert status in (200, 202, 204)
    await age_everything(db)
    report = await collect(svc)
    assert sorted(report.v1_images) == sorted(i.image_id for i in chain)
    for image in chain:
        assert not stored(settings, sha256(image.layer))
    assert stored(settings, sha256(declared.layer))


async def test_stale_v1_uploads_and_expired_v2_sessions_are_collected(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v1 = V1Client(client)
    stuck = make_image("gc-stuck", random_bytes(300, 50))
    status, _, _ = await v1.call("PUT", f"/v1/images/{stuck.image_id}/json", data=stuck.json)
    assert status == 200
    status, _, _ = await v1.call("PUT", f"/v1/images/{stuck.image_id}/layer", data=stuck.layer)
    assert status == 200  # never confirmed with a checksum
    v2 = V2Client(client)
    status, _, headers = await v2.call("POST", "/v2/alice/app/blobs/uploads/")
    assert status == 202
    status, _, _ = await v2.call("PATCH", headers["Location"], data=b"x" * 1000)
    assert status == 202

    report = await collect(svc)  # both are in progress
    assert report.v1_images == []
    assert report.uploads == 0
    await age_everything(db)
    report = await collect(svc)
    assert report.v1_images == [stuck.image_id]
    assert [d for d, _ in report.blobs] == [sha256(stuck.layer)]
    assert (report.uploads, report.upload_bytes) == (1, 1000)
    assert await db.fetchval("SELECT count(*) FROM v2_uploads") == 0
    assert not stored(settings, sha256(stuck.layer))


async def test_a_blob_used_by_v1_and_v2_lives_while_either_uses_it(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    layer = random_bytes(700, 60)
    image = make_image("gc-both", layer)
    v1, v2 = V1Client(client), V2Client(client)
    await v1.push("alice/both", "latest", [image])
    digest = await push_image(v2, "alice/both", "v2", [layer])
    status, _, _ = await v2.call("DELETE", f"/v2/alice/both/manifests/{digest}")
    assert status == 202
    await age_everything(db)
    report = await collect(svc)
    assert sha256(layer) not in [d for d, _ in report.blobs]  # the v1 image still uses it
    assert stored(settings, sha256(layer))
    status, _, _ = await v1.call("DELETE", "/v1/repositories/alice/both/tags/latest")
    assert status == 200
    await db.execute("DELETE FROM repository_images")
    await age_everything(db)
    report = await collect(svc)
    assert sha256(layer) in [d for d, _ in report.blobs]
    assert not stored(settings, sha256(layer))


async def test_a_collection_with_nothing_to_do_touches_nothing(
    client: Client, svc: Services, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    await push_image(v2, "alice/app", "v1", [random_bytes(100, 70)])
    await age_everything(db)
    await collect(svc)
    before = await blob_rows(db)
    report = await collect(svc)
    assert report.finished
    assert report.blobs == []
    assert report.manifests == []
    assert await blob_rows(db) == before
    # The queues are empty: the next run's cost does not depend on what is stored.
    assert await db.fetchval("SELECT count(*) FROM gc_blob_reviews") == 0
    assert await db.fetchval("SELECT count(*) FROM gc_link_reviews") == 0
