"""Attack: a manifest that lies about the sizes of what it refers to, or its schema version.

Clients trust descriptor sizes (they size buffers and verify downloads by
them). A size that is not the stored blob's is MANIFEST_INVALID: the blob is
known, the manifest is what is wrong (BLOB_UNKNOWN would send clients to
upload a blob the registry already has). ``schemaVersion`` is the integer 2.
"""

from __future__ import annotations

import json

from tests.conftest import Client
from tests.support.content import sha256
from tests.support.v2client import OCI_INDEX, V2Client, descriptor, image_manifest

CONFIG = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
LAYER = b"0123456789"


def _error(body: bytes) -> dict[str, object]:
    error: dict[str, object] = json.loads(body)["errors"][0]
    return error


async def test_wrong_layer_size_is_rejected(client: Client) -> None:
    v2 = V2Client(client)
    for blob in (CONFIG, LAYER):
        await v2.push_blob("alice/app", blob)
    manifest = json.loads(image_manifest(CONFIG, [LAYER]))
    manifest["layers"][0]["size"] = 999999
    status, body, _ = await v2.push_manifest("alice/app", "v1", json.dumps(manifest).encode())
    assert status == 400
    assert _error(body)["code"] == "MANIFEST_INVALID"
    assert "999999" in str(_error(body)["detail"])
    status, _, _ = await v2.call("GET", "/v2/alice/app/manifests/v1")
    assert status == 404
    manifest["layers"][0]["size"] = len(LAYER)
    status, body, _ = await v2.push_manifest("alice/app", "v1", json.dumps(manifest).encode())
    assert status == 201, body


async def test_wrong_child_manifest_size_is_rejected(client: Client) -> None:
    v2 = V2Client(client)
    child = await v2.push_image("alice/app", "v1", [LAYER])
    entry = descriptor(child, "application/vnd.oci.image.manifest.v1+json")
    entry["size"] += 1
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
    status, body, _ = await v2.push_manifest(
        "alice/app", "multi", json.dumps(index).encode(), OCI_INDEX
    )
    assert status == 400
    assert _error(body)["code"] == "MANIFEST_INVALID"
    assert sha256(child) in str(_error(body)["detail"])


async def test_float_schema_version_is_rejected(client: Client) -> None:
    v2 = V2Client(client)
    for blob in (CONFIG, LAYER):
        await v2.push_blob("alice/app", blob)
    body = image_manifest(CONFIG, [LAYER]).replace(b'"schemaVersion": 2', b'"schemaVersion": 2.0')
    assert b"2.0" in body
    status, answer, _ = await v2.push_manifest("alice/app", "v1", body)
    assert status == 400
    assert _error(answer)["code"] == "MANIFEST_INVALID"
