"""v2 manifests, tags, catalog and referrers over HTTP (spec end-3, end-7 … end-9, end-12)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.conftest import Client
from tests.support.content import sha256
from tests.support.v2client import (
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    V2Client,
    descriptor,
    image_manifest,
)

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"layer bytes"


def error_code(body: Any) -> str:
    return str(body["errors"][0]["code"])


async def pushed_blobs(client: Client, name: str = "alice/app") -> V2Client:
    v2 = V2Client(client)
    await v2.push_blob(name, CONFIG)
    await v2.push_blob(name, LAYER)
    return v2


async def test_put_get_head_byte_exact_by_tag_and_digest(client: Client) -> None:
    v2 = await pushed_blobs(client)
    manifest = image_manifest(CONFIG, [LAYER])
    status, _, headers = await v2.push_manifest("alice/app", "latest", manifest)
    assert status == 201
    digest = sha256(manifest)
    assert headers["Docker-Content-Digest"] == digest
    assert headers["Location"] == f"/v2/alice/app/manifests/{digest}"
    for ref in ("latest", digest):
        resp = await client.get(f"/v2/alice/app/manifests/{ref}")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["Docker-Content-Digest"] == digest
        assert await resp.read() == manifest
        resp = await client.head(f"/v2/alice/app/manifests/{ref}")
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(manifest))
        assert resp.headers["Docker-Content-Digest"] == digest
        assert await resp.read() == b""
    resp = await client.get(
        f"/v2/alice/app/manifests/{digest}", headers={"If-None-Match": f'"{digest}"'}
    )
    assert resp.status == 304


async def test_put_by_digest_must_match_the_body(client: Client) -> None:
    v2 = await pushed_blobs(client)
    manifest = image_manifest(CONFIG, [LAYER])
    status, body, _ = await v2.push_manifest("alice/app", sha256(b"other"), manifest)
    assert status == 400
    assert error_code(json.loads(body)) == "DIGEST_INVALID"
    status, _, _ = await v2.push_manifest("alice/app", sha256(manifest), manifest)
    assert status == 201


async def test_missing_blobs_and_children_are_manifest_blob_unknown(client: Client) -> None:
    v2 = V2Client(client)
    await v2.push_blob("alice/app", CONFIG)
    status, body, _ = await v2.push_manifest("alice/app", "t", image_manifest(CONFIG, [LAYER]))
    assert status == 400
    error = json.loads(body)["errors"][0]
    assert error["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert error["detail"] == {"digest": sha256(LAYER)}
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(b"x", OCI_MANIFEST)]}
    ).encode()
    status, body, _ = await v2.push_manifest("alice/app", "t", index, OCI_INDEX)
    assert error_code(json.loads(body)) == "MANIFEST_BLOB_UNKNOWN"


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        (b"not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (b'{"schemaVersion": 1}', OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "text/plain"}', "text/plain"),
        (b'{"schemaVersion": 2, "config": {}, "layers": []}', OCI_MANIFEST),
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(),
            DOCKER_V2S2,
        ),
    ],
)
async def test_invalid_manifests_are_400(client: Client, body: bytes, media_type: str) -> None:
    status, text, _ = await V2Client(client).push_manifest("alice/app", "t", body, media_type)
    assert status == 400
    assert error_code(json.loads(text)) == "MANIFEST_INVALID"


async def test_manifest_over_4_mib_is_413(client: Client) -> None:
    body = b'{"schemaVersion": 2, "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    resp = await client.put(
        "/v2/alice/app/manifests/t",
        data=io.BytesIO(body),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status == 413


async def test_docker_manifest_and_list_keep_their_media_types(client: Client) -> None:
    v2 = await pushed_blobs(client)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_V2S2,
            "config": descriptor(CONFIG, "application/vnd.docker.container.image.v1+json"),
            "layers": [descriptor(LAYER, "application/vnd.docker.image.rootfs.diff.tar.gzip")],
        }
    ).encode()
    assert (await v2.push_manifest("alice/app", "d", manifest, DOCKER_V2S2))[0] == 201
    manifest_list = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [descriptor(manifest, DOCKER_V2S2, platform={"os": "linux"})],
        }
    ).encode()
    assert (await v2.push_manifest("alice/app", "l", manifest_list, DOCKER_LIST))[0] == 201
    for tag, media_type in (("d", DOCKER_V2S2), ("l", DOCKER_LIST)):
        resp = await client.get(f"/v2/alice/app/manifests/{tag}")
        assert resp.headers["Content-Type"] == media_type


async def test_delete_by_tag_then_by_digest(client: Client) -> None:
    v2 = await pushed_blobs(client)
    manifest = image_manifest(CONFIG, [LAYER])
    digest = sha256(manifest)
    for tag in ("a", "b"):
        await v2.push_manifest("alice/app", tag, manifest)
    assert (await client.delete("/v2/alice/app/manifests/a")).status == 202
    assert (await client.get("/v2/alice/app/manifests/a")).status == 404
    assert (await client.get(f"/v2/alice/app/manifests/{digest}")).status == 200
    assert (await client.delete(f"/v2/alice/app/manifests/{digest}")).status == 202
    resp = await client.get("/v2/alice/app/manifests/b")  # tags go with their manifest
    assert resp.status == 404
    assert error_code(await resp.json()) == "MANIFEST_UNKNOWN"
    assert (await client.delete(f"/v2/alice/app/manifests/{digest}")).status == 404


@pytest.mark.parametrize("reference", ["sha256:totallywrong", "-bad-tag", "a" * 129])
async def test_invalid_references(client: Client, reference: str) -> None:
    # A read of a reference that can name nothing is unknown (spec end-3: only 404);
    # a delete of one is a bad request.
    resp = await client.get(f"/v2/alice/app/manifests/{reference}")
    assert resp.status == 404
    assert error_code(await resp.json()) == "MANIFEST_UNKNOWN"
    resp = await client.delete(f"/v2/alice/app/manifests/{reference}")
    assert resp.status == 400
    assert error_code(await resp.json()) in ("DIGEST_INVALID", "TAG_INVALID")


async def test_unknown_manifest_is_404(client: Client) -> None:
    resp = await client.get("/v2/nobody/app/manifests/latest")
    assert resp.status == 404
    assert error_code(await resp.json()) == "MANIFEST_UNKNOWN"


async def test_tags_sorted_and_paginated(client: Client) -> None:
    v2 = await pushed_blobs(client)
    manifest = image_manifest(CONFIG, [LAYER])
    tags = ["b", "a", "Z", "a1", "_x", "1.0", "c"]
    for tag in tags:
        await v2.push_manifest("alice/app", tag, manifest)
    expected = sorted(tags)  # byte order: digits, upper case, "_", lower case
    resp = await client.get("/v2/alice/app/tags/list")
    assert await resp.json() == {"name": "alice/app", "tags": expected}
    assert "Link" not in resp.headers
    seen: list[str] = []
    url = "/v2/alice/app/tags/list?n=3"
    while True:
        resp = await client.get(url)
        page = (await resp.json())["tags"]
        assert len(page) <= 3
        seen += page
        if "Link" not in resp.headers:
            break
        url = resp.headers["Link"].split(";")[0].strip("<>")
    assert seen == expected
    resp = await client.get("/v2/alice/app/tags/list?n=0")
    assert (await resp.json())["tags"] == []
    assert "Link" not in resp.headers
    resp = await client.get("/v2/alice/app/tags/list?last=a1")
    assert (await resp.json())["tags"] == ["b", "c"]


@pytest.mark.parametrize("n", ["-1", "x", "1e3"])
async def test_bad_page_size_is_400(client: Client, n: str) -> None:
    resp = await client.get(f"/v2/alice/app/tags/list?n={n}")
    assert resp.status == 400


async def test_tags_of_unknown_repository_is_name_unknown(client: Client) -> None:
    resp = await client.get("/v2/nobody/app/tags/list")
    assert resp.status == 404
    assert error_code(await resp.json()) == "NAME_UNKNOWN"


async def test_catalog_paginated(client: Client) -> None:
    v2 = V2Client(client)
    names = ["alice/b", "alice/a", "bob_b/x", "solo"]
    for name in names:
        await v2.push_blob(name, LAYER)
    resp = await client.get("/v2/_catalog")
    assert (await resp.json())["repositories"] == ["alice/a", "alice/b", "bob_b/x", "library/solo"]
    resp = await client.get("/v2/_catalog?n=2")
    assert (await resp.json())["repositories"] == ["alice/a", "alice/b"]
    assert resp.headers["Link"] == '</v2/_catalog?n=2&last=alice%2Fb>; rel="next"'
    resp = await client.get("/v2/_catalog?n=2&last=alice/b")
    assert (await resp.json())["repositories"] == ["bob_b/x", "library/solo"]


async def test_one_component_names_are_library_in_both_spellings(client: Client) -> None:
    v2 = await pushed_blobs(client, "solo")
    await v2.push_manifest("solo", "t", image_manifest(CONFIG, [LAYER]))
    assert (await client.get("/v2/library/solo/manifests/t")).status == 200


async def test_subject_referrers_and_artifact_type_filter(client: Client) -> None:
    v2 = await pushed_blobs(client)
    subject_manifest = image_manifest(CONFIG, [LAYER])
    subject = sha256(subject_manifest)
    # A referrer may be pushed before its subject (OCI 1.1).
    await v2.push_blob("alice/app", b"{}")
    referrers = []
    for artifact_type in ("application/vnd.example.sbom", "application/vnd.example.sig"):
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": descriptor(b"{}", OCI_EMPTY),
                "layers": [descriptor(b"{}", OCI_EMPTY)],
                "subject": descriptor(subject_manifest, OCI_MANIFEST),
                "annotations": {"org.example.kind": artifact_type},
            }
        ).encode()
        status, _, headers = await v2.push_manifest("alice/app", sha256(body), body)
        assert status == 201
        assert headers["OCI-Subject"] == subject
        referrers.append((body, artifact_type))
    await v2.push_manifest("alice/app", "latest", subject_manifest)

    resp = await client.get(f"/v2/alice/app/referrers/{subject}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    index = await resp.json(content_type=OCI_INDEX)
    assert index["mediaType"] == OCI_INDEX
    assert sorted(index["manifests"], key=lambda d: d["artifactType"]) == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": sha256(body),
            "size": len(body),
            "artifactType": artifact_type,
            "annotations": {"org.example.kind": artifact_type},
        }
        for body, artifact_type in referrers
    ]
    resp = await client.get(
        f"/v2/alice/app/referrers/{subject}?artifactType=application/vnd.example.sig"
    )
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    filtered = (await resp.json(content_type=OCI_INDEX))["manifests"]
    assert [d["artifactType"] for d in filtered] == ["application/vnd.example.sig"]

    resp = await client.get(f"/v2/alice/app/referrers/{sha256(b'nothing')}")
    assert resp.status == 200
    assert (await resp.json(content_type=OCI_INDEX))["manifests"] == []
    assert (await client.get("/v2/alice/app/referrers/sha256:bad")).status == 400


async def test_artifact_type_falls_back_to_config_media_type(client: Client) -> None:
    v2 = V2Client(client)
    config = b'{"any": "config"}'
    await v2.push_blob("alice/app", config)
    subject = sha256(b"some manifest")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, "application/vnd.example.config+json"),
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 13},
        }
    ).encode()
    assert (await v2.push_manifest("alice/app", "sig", body))[0] == 201
    resp = await client.get(f"/v2/alice/app/referrers/{subject}")
    [entry] = (await resp.json(content_type=OCI_INDEX))["manifests"]
    assert entry["artifactType"] == "application/vnd.example.config+json"
