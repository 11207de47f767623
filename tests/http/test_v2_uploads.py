"""v2 blobs and upload sessions over HTTP (spec end-2, end-4 … end-6, end-10, end-11, end-13)."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.images import random_bytes
from tests.support.store import blob_files, upload_files
from tests.support.v1client import chunked
from tests.support.v2client import V2Client

DATA = random_bytes(3 * 1024 * 1024 + 5, seed=21)


def error_code(body: Any) -> str:
    return str(body["errors"][0]["code"])


async def start(client: Client, name: str = "alice/app") -> str:
    resp = await client.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202
    assert resp.headers["Range"] == "0-0"
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    location = resp.headers["Location"]
    assert location.startswith(f"/v2/{name}/blobs/uploads/")
    assert resp.headers["Docker-Upload-UUID"] == location.rsplit("/", 1)[1]
    return location


async def test_streamed_patch_then_put_and_read_back(client: Client, settings: Settings) -> None:
    digest = await V2Client(client).push_blob("alice/app", DATA)
    resp = await client.head(f"/v2/alice/app/blobs/{digest}")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert resp.headers["Docker-Content-Digest"] == digest
    resp = await client.get(f"/v2/alice/app/blobs/{digest}")
    assert await resp.read() == DATA
    assert len(blob_files(settings)) == 1
    assert upload_files(settings) == []


async def test_chunks_in_order_status_and_final_chunk_on_put(client: Client) -> None:
    location = await start(client)
    resp = await client.patch(
        location, data=DATA[:1000], headers={"Content-Range": "0-999", "Content-Length": "1000"}
    )
    assert resp.status == 202
    assert resp.headers["Range"] == "0-999"
    location = resp.headers["Location"]
    resp = await client.get(location)
    assert resp.status == 204
    assert resp.headers["Range"] == "0-999"
    # Out of order: a gap, or a repeat of bytes already received.
    for bad in ("1001-1100", "0-99"):
        resp = await client.patch(location, data=b"x" * 100, headers={"Content-Range": bad})
        assert resp.status == 416
        assert error_code(await resp.json()) == "BLOB_UPLOAD_INVALID"
    # A range that does not match the body.
    resp = await client.patch(location, data=b"x" * 10, headers={"Content-Range": "1000-1099"})
    assert resp.status == 400
    assert error_code(await resp.json()) == "SIZE_INVALID"
    resp = await client.patch(
        location, data=DATA[1000:2000], headers={"Content-Range": "1000-1999"}
    )
    assert resp.headers["Range"] == "0-1999"
    resp = await client.put(f"{location}?digest={sha256(DATA)}", data=chunked(DATA[2000:]))
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v2/alice/app/blobs/{sha256(DATA)}"
    assert await (await client.get(resp.headers["Location"])).read() == DATA
    assert (await client.get(location)).status == 404  # the session is over


async def test_single_post_monolithic_upload(client: Client) -> None:
    digest = sha256(DATA)
    resp = await client.post(f"/v2/alice/app/blobs/uploads/?digest={digest}", data=chunked(DATA))
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest
    assert await (await client.get(f"/v2/alice/app/blobs/{digest}")).read() == DATA


async def test_post_then_monolithic_put_with_body(client: Client) -> None:
    """containerd's and oras' way: no PATCH, the whole blob on the PUT."""
    location = await start(client)
    resp = await client.put(f"{location}?digest={sha256(DATA)}", data=chunked(DATA))
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == sha256(DATA)


async def test_digest_mismatch_is_400_and_ends_the_session(
    client: Client, settings: Settings, db: asyncpg.Connection
) -> None:
    location = await start(client)
    await client.patch(location, data=chunked(DATA))
    resp = await client.put(f"{location}?digest={sha256(b'other')}")
    assert resp.status == 400
    assert error_code(await resp.json()) == "DIGEST_INVALID"
    assert (await client.get(location)).status == 404
    assert blob_files(settings) == []
    assert upload_files(settings) == []
    assert await db.fetchval("SELECT count(*) FROM v2_uploads") == 0


@pytest.mark.parametrize("query", ["", "?digest=sha256:nothex", "?digest=md5:abc"])
async def test_put_without_a_valid_digest_is_400(client: Client, query: str) -> None:
    location = await start(client)
    resp = await client.put(location + query)
    assert resp.status == 400
    assert error_code(await resp.json()) == "DIGEST_INVALID"


async def test_cancel_removes_session_and_bytes(client: Client, settings: Settings) -> None:
    location = await start(client)
    await client.patch(location, data=DATA[:100])
    assert (await client.delete(location)).status == 204
    resp = await client.patch(location, data=b"more")
    assert resp.status == 404
    assert error_code(await resp.json()) == "BLOB_UPLOAD_UNKNOWN"
    assert upload_files(settings) == []


@pytest.mark.parametrize("upload_id", ["0" * 32, "not-a-session", "..%2F..%2Fblobs"])
async def test_unknown_sessions_are_404(client: Client, upload_id: str) -> None:
    await start(client)
    digest = sha256(b"")
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        path = f"/v2/alice/app/blobs/uploads/{upload_id}?digest={digest}"
        resp = await client.request(method, path)
        assert resp.status == 404, method
        assert error_code(await resp.json()) == "BLOB_UPLOAD_UNKNOWN"


async def test_session_of_another_repository_is_unknown(client: Client) -> None:
    location = await start(client, "alice/app")
    upload_id = location.rsplit("/", 1)[1]
    resp = await client.patch(f"/v2/alice/other/blobs/uploads/{upload_id}", data=b"x")
    assert resp.status == 404


async def test_another_replica_takes_the_next_chunk(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    """Sessions live in the database and storage: a second app (no hash state) finishes it."""
    location = await start(client)
    await client.patch(location, data=DATA[:1_000_000])
    replica = await aiohttp_client(create_app(settings))
    resp = await replica.patch(location, data=DATA[1_000_000:2_000_000])
    assert resp.headers["Range"] == "0-1999999"
    resp = await replica.put(f"{location}?digest={sha256(DATA)}", data=chunked(DATA[2_000_000:]))
    assert resp.status == 201
    assert await (await client.get(resp.headers["Location"])).read() == DATA


async def test_abandoned_sessions_expire_with_their_files(
    client: Client, settings: Settings, db: asyncpg.Connection, aiohttp_client: AiohttpClient
) -> None:
    location = await start(client)
    await client.patch(location, data=DATA[:100])
    await db.execute("UPDATE v2_uploads SET updated_at = now() - interval '2 hours'")
    # A replica starting up expires what was untouched for stale_upload_seconds (1 h).
    await aiohttp_client(create_app(settings))
    assert await db.fetchval("SELECT count(*) FROM v2_uploads") == 0
    assert upload_files(settings) == []
    assert (await client.get(location)).status == 404


async def test_total_size_limit_is_413(settings: Settings, aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(settings, max_layer_bytes=1500)))
    location = await start(client)
    assert (await client.patch(location, data=b"x" * 1000)).status == 202
    resp = await client.patch(location, data=chunked(b"x" * 1000, 100))
    assert resp.status == 413
    assert error_code(await resp.json()) == "SIZE_INVALID"
    assert (await client.get(location)).headers["Range"] == "0-999"  # the chunk left no trace


async def test_blob_ranges(client: Client) -> None:
    digest = await V2Client(client).push_blob("alice/app", DATA)
    resp = await client.get(f"/v2/alice/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 10-19/{len(DATA)}"
    assert await resp.read() == DATA[10:20]
    resp = await client.get(
        f"/v2/alice/app/blobs/{digest}", headers={"Range": f"bytes={len(DATA)}-"}
    )
    assert resp.status == 416


async def test_blob_is_per_repository_and_delete_unlinks_it(
    client: Client, settings: Settings
) -> None:
    digest = await V2Client(client).push_blob("alice/app", DATA)
    resp = await client.get(f"/v2/alice/other/blobs/{digest}")
    assert resp.status == 404
    assert error_code(await resp.json()) == "BLOB_UNKNOWN"
    resp = await client.delete(f"/v2/alice/app/blobs/{digest}")
    assert resp.status == 202
    assert (await client.head(f"/v2/alice/app/blobs/{digest}")).status == 404
    assert (await client.delete(f"/v2/alice/app/blobs/{digest}")).status == 404
    assert len(blob_files(settings)) == 1  # bytes stay for garbage collection


async def test_mount_from_a_repository_holding_the_blob(client: Client) -> None:
    digest = await V2Client(client).push_blob("alice/app", DATA)
    resp = await client.post(f"/v2/bob_b/app/blobs/uploads/?mount={digest}&from=alice/app")
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v2/bob_b/app/blobs/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest
    assert (await client.head(f"/v2/bob_b/app/blobs/{digest}")).status == 200


@pytest.mark.parametrize("query", ["mount={d}&from=alice/none", "mount={d}", "mount={d}&from=x"])
async def test_mount_of_a_blob_not_there_opens_a_session(client: Client, query: str) -> None:
    digest = sha256(b"never pushed")
    resp = await client.post(f"/v2/bob_b/app/blobs/uploads/?{query.format(d=digest)}")
    assert resp.status == 202
    assert (await client.delete(resp.headers["Location"])).status == 204


@pytest.mark.parametrize(
    "path",
    [
        "/v2/Alice/app/blobs/sha256:" + "0" * 64,
        "/v2/alice//app/blobs/sha256:" + "0" * 64,
        "/v2/alice/app-/blobs/sha256:" + "0" * 64,
        "/v2/alice/a..b/blobs/sha256:" + "0" * 64,
        "/v2/alice/a%2F..%2Fb/blobs/sha256:" + "0" * 64,
        "/v2/" + "a" * 256 + "/blobs/sha256:" + "0" * 64,
    ],
)
async def test_invalid_names_are_400(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 400
    assert error_code(await resp.json()) == "NAME_INVALID"


@pytest.mark.parametrize(
    "digest",
    ["sha256:totallywrong", "sha256:" + "A" * 64, "sha1:" + "0" * 40, "sha512:" + "0" * 64, "x"],
)
async def test_invalid_digests_are_400(client: Client, digest: str) -> None:
    for method in ("GET", "HEAD", "DELETE"):
        resp = await client.request(method, f"/v2/alice/app/blobs/{digest}")
        assert resp.status == 400, method
    resp = await client.get(f"/v2/alice/app/blobs/{digest}")
    assert error_code(await resp.json()) == "DIGEST_INVALID"


async def test_sha512_blob(client: Client) -> None:
    import hashlib

    digest = "sha512:" + hashlib.sha512(DATA).hexdigest()
    location = await start(client)
    await client.patch(location, data=chunked(DATA))
    resp = await client.put(f"{location}?digest={digest}")
    assert resp.status == 201
    assert await (await client.get(f"/v2/alice/app/blobs/{digest}")).read() == DATA
