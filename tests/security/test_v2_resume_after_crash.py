"""Attack (fault): ``kill -9`` during a v2 PATCH must not block the session after a restart.

The killed request's claim belongs to a dead process: the restarted server (or
any replica) resumes it at once. And a session that is really busy answers a
retryable 429 with ``Retry-After``, not a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from registryd.domain import uploads
from registryd.keys import SERVICES
from tests.conftest import Client
from tests.process.conftest import Launcher
from tests.support.content import sha256
from tests.support.images import random_bytes
from tests.support.polling import eventually
from tests.support.v1client import chunked

MIB = 1024 * 1024
BLOB = random_bytes(3 * MIB, seed=102)


async def _wait_until_claimed(db: asyncpg.Connection) -> None:
    async def claimed() -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM v2_uploads WHERE busy_since IS NOT NULL")
        )

    await eventually(claimed, "the PATCH to claim the session")


async def test_session_resumes_at_once_after_kill_9(
    launcher: Launcher, tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    data_dir = tmp_path / "data"
    server = launcher.start(data_dir, database_url)
    hang = asyncio.Event()

    async def hanging_body() -> AsyncIterator[bytes]:
        yield BLOB[:MIB]
        await hang.wait()

    async with aiohttp.ClientSession(base_url=server.url) as http:
        resp = await http.post("/v2/alice/app/blobs/uploads/")
        assert resp.status == 202
        location = resp.headers["Location"]
        patch = asyncio.create_task(http.patch(location, data=hanging_body()))
        await _wait_until_claimed(db)
        await asyncio.sleep(0.2)
        server.proc.kill()
        await asyncio.to_thread(server.proc.wait, 10)
        hang.set()
        with contextlib.suppress(aiohttp.ClientError):
            await patch

    server = launcher.start(data_dir, database_url)
    async with aiohttp.ClientSession(base_url=server.url) as http:
        resp = await http.get(location)
        assert resp.status == 204
        assert resp.headers["Range"] == "0-0"  # the killed chunk was never recorded
        # Straight away: no waiting for a stale window.
        resp = await http.patch(location, data=chunked(BLOB[: 2 * MIB]))
        assert resp.status == 202, await resp.text()
        assert resp.headers["Range"] == f"0-{2 * MIB - 1}"
        resp = await http.put(f"{location}?digest={sha256(BLOB)}", data=chunked(BLOB[2 * MIB :]))
        assert resp.status == 201, await resp.text()
        resp = await http.get(f"/v2/alice/app/blobs/{sha256(BLOB)}")
        assert await resp.read() == BLOB
    assert await asyncio.to_thread(server.stop) == 0


async def test_busy_session_is_a_retryable_429(
    launcher: Launcher, tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    server = launcher.start(tmp_path / "data", database_url)
    release = asyncio.Event()

    async def held_body() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await release.wait()

    async with aiohttp.ClientSession(base_url=server.url) as http:
        resp = await http.post("/v2/alice/app/blobs/uploads/")
        location = resp.headers["Location"]
        first = asyncio.create_task(http.patch(location, data=held_body()))
        await _wait_until_claimed(db)
        resp = await http.patch(location, data=b"y" * 10)
        assert resp.status == 429
        assert resp.headers["Retry-After"].isdigit()
        assert (await resp.json())["errors"][0]["code"] == "TOOMANYREQUESTS"
        release.set()
        assert (await first).status == 202
        # Once the first is done, the retry goes through.
        resp = await http.patch(location, data=b"y" * 10)
        assert resp.status == 202
        assert resp.headers["Range"] == "0-1009"
    assert await asyncio.to_thread(server.stop) == 0


async def test_claim_left_by_a_failed_release_is_freed(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient, db: asyncpg.Connection
) -> None:
    """A live process whose release failed (say, the database blinked) holds a claim no
    request of it uses: its own next request takes it, and the periodic release frees it
    for the other replicas."""
    replica = await aiohttp_client(create_app(settings))
    resp = await client.post("/v2/alice/app/blobs/uploads/")
    location = resp.headers["Location"]
    owner = await db.fetchval(
        """
        SELECT objid::text::integer FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND a.application_name = 'registryd process owner'
          AND a.datname = current_database()
        ORDER BY a.backend_start LIMIT 1
        """
    )
    await db.execute("UPDATE v2_uploads SET busy_since = now(), claim_owner = $1", owner)
    resp = await replica.patch(location, data=b"x" * 10)
    assert resp.status == 429  # its process lives: the other replica must wait
    released = await uploads.release_leftover_claims(client.app[SERVICES])
    assert released == 1
    resp = await replica.patch(location, data=b"x" * 10)
    assert resp.status == 202, await resp.text()

    await db.execute("UPDATE v2_uploads SET busy_since = now(), claim_owner = $1", owner)
    resp = await client.patch(location, data=b"y" * 10)
    assert resp.status == 202  # the process's own leftover: taken at once
    assert resp.headers["Range"] == "0-19"
