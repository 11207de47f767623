"""Attack: a PATCH that loses its claim keeps writing, into a blob another request committed.

A PATCH streams slowly. Its claim is then taken for abandoned: the database cut
the connection that tells other replicas this process lives (its backend is
terminated here) — on older versions, the claim outlived the stale window
(aged here). A second replica takes the session over and commits the blob.
The first PATCH then writes on: none of its bytes may reach the committed
blob, and a later push of the same digest must not keep a damaged copy.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import asyncpg
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from registryd.digest import Digest
from registryd.storage import paths
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.images import random_bytes
from tests.support.polling import eventually
from tests.support.v1client import chunked
from tests.support.v2client import V2Client

MIB = 1024 * 1024
BLOB = random_bytes(2 * MIB, seed=101)


async def test_taken_over_patch_cannot_write_into_the_committed_blob(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient, db: asyncpg.Connection
) -> None:
    replica = await aiohttp_client(create_app(settings))
    resp = await client.post("/v2/alice/app/blobs/uploads/")
    assert resp.status == 202
    location = resp.headers["Location"]
    upload_id = resp.headers["Docker-Upload-UUID"]
    resume = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"A" * MIB  # one whole write chunk: it reaches the file at once
        await resume.wait()
        yield b"Z" * MIB

    first = asyncio.create_task(client.patch(location, data=slow_body()))

    async def first_wrote() -> bool:
        files = list(paths.uploads_dir(settings.storage_root).glob(f"{upload_id}*"))
        return bool(files) and files[0].stat().st_size >= MIB

    await eventually(first_wrote, "the first PATCH to write its first MiB")

    # The claim looks abandoned: the owner's liveness connection is cut (and, for the
    # time-based claims of older versions, the claim is made older than their window).
    await db.execute(
        """
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'registryd process owner' AND datname = current_database()
        """
    )
    await db.execute("UPDATE v2_uploads SET busy_since = busy_since - interval '2 hours'")

    # The second replica takes over and commits the whole blob.
    digest = sha256(BLOB)
    for _ in range(100):
        resp = await replica.put(f"{location}?digest={digest}", data=chunked(BLOB))
        if resp.status != 429:
            break
        await asyncio.sleep(0.05)  # the terminated backend may take a moment to go
    assert resp.status == 201, await resp.text()

    # The first PATCH writes on, then ends: it lost its claim, and it is told so.
    resume.set()
    answer = await first

    stored = paths.blob_path(settings.storage_root, Digest.parse(sha256(BLOB)))
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(BLOB).hexdigest()
    resp = await client.get(f"/v2/alice/app/blobs/{digest}")
    assert await resp.read() == BLOB
    # The first PATCH is told that it lost its claim (retryable; the session is over).
    assert answer.status == 429, await answer.text()

    # Another user's correct push of the same digest is served correctly.
    assert await V2Client(replica).push_blob("bob/app", BLOB) == digest
    resp = await replica.get(f"/v2/bob/app/blobs/{digest}")
    assert await resp.read() == BLOB
    # Nothing of the session is left behind.
    assert await db.fetchval("SELECT count(*) FROM v2_uploads") == 0
