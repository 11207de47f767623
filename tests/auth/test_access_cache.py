"""The per-process access cache: used, and never a source of stale grants.

Two apps on one database stand for two workers (or replicas): they share
nothing but PostgreSQL, exactly like separate processes.
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
from aiohttp.pytest_plugin import AiohttpClient

from registryd.access.facts import AccessFacts
from registryd.app import create_app
from registryd.config import Settings
from registryd.keys import SERVICES
from tests.auth.test_docker_flows import chain
from tests.conftest import Client
from tests.support.docker_v1 import DockerV1
from tests.support.polling import eventually


def facts(client: Client) -> AccessFacts:
    access = client.app[SERVICES].access
    assert access is not None
    return access


async def armed(client: Client) -> AccessFacts:
    access = facts(client)
    await eventually(lambda: access.armed, "the access cache arms", within_seconds=10)
    return access


async def test_private_is_refused_on_every_worker_within_a_second(
    client: Client, settings: Settings, aiohttp_client: AiohttpClient, alice: DockerV1
) -> None:
    other = await aiohttp_client(create_app(settings))
    images = chain("cached")
    await alice.push("alice/app", "latest", images)
    layer = f"/v1/images/{images[-1].image_id}/layer"
    tags = "/v1/repositories/alice/app/tags"
    other_facts = await armed(other)
    await armed(client)
    # Warm the other worker's cache: anonymous reads of a public repository.
    for _ in range(3):
        assert (await other.get(layer)).status == 200
        assert (await other.get(tags)).status == 200
    hits = other_facts.hits
    assert (await other.get(layer)).status == 200
    assert other_facts.hits > hits, "repeated reads are answered from the cache"

    resp = await client.put(
        "/v1/repositories/alice/app/properties", json={"access": "private"}, headers=alice.basic
    )
    assert resp.status == 200

    async def refused() -> bool:
        return (await other.get(layer)).status == 401 and (await other.get(tags)).status == 401

    await eventually(refused, "the other worker refuses within 1 s of the change", 1.0)
    # The owner still reads it through the other worker.
    resp = await other.get(tags, headers=alice.basic)
    assert resp.status == 200


async def test_lost_notifications_drop_the_cache_instead_of_serving_stale_grants(
    client: Client, alice: DockerV1, db: asyncpg.Connection
) -> None:
    images = chain("listener")
    await alice.push("alice/app", "latest", images)
    layer = f"/v1/images/{images[-1].image_id}/layer"
    access = await armed(client)
    assert (await client.get(layer)).status == 200
    assert (await client.get(layer)).status == 200  # now cached

    # Kill the listening connection, as a database restart or a network cut would
    # (the access listener LISTENs to the manifest channel last; v1 images have another).
    killed = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN %registryd_manifests%'"
    )
    assert killed == 1
    await eventually(lambda: not access.armed, "a dead listener disarms the cache", 5)
    # A change no notification tells anyone about (triggers off for this session):
    # with the cache dropped, it is seen at once.
    async with db.transaction():
        await db.execute("SET LOCAL session_replication_role = replica")
        await db.execute(
            "UPDATE repositories SET is_public = false WHERE namespace = 'alice' AND name = 'app'"
        )
    assert (await client.get(layer)).status == 401
    # The listener comes back by itself and starts from an empty cache.
    await armed(client)
    assert (await client.get(layer)).status == 401
    assert (await client.get(layer, headers=alice.basic)).status == 200


async def test_cache_off_reads_the_database_every_time(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(settings, access_cache=False)))
    access = facts(client)
    await asyncio.sleep(0.2)
    assert not access.armed
    await client.get("/v1/repositories/alice/app/tags")
    await client.get("/v1/repositories/alice/app/tags")
    assert access.hits == 0


async def test_the_writing_worker_never_serves_the_old_fact(
    client: Client, alice: DockerV1
) -> None:
    """No notification latency on the worker that made the change: its answer to the
    write goes out only after its cache is emptied."""
    images = chain("flip")
    await alice.push("alice/app", "latest", images)
    layer = f"/v1/images/{images[-1].image_id}/layer"
    await armed(client)
    for access, expected in [("private", 401), ("public", 200)] * 10:
        assert (await client.get(layer)).status in (200, 401)  # cached, whichever it is
        resp = await client.put(
            "/v1/repositories/alice/app/properties", json={"access": access}, headers=alice.basic
        )
        assert resp.status == 200
        assert (await client.get(layer)).status == expected
