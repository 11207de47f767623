"""Attack: flood the server with wrong Basic credentials to burn its CPU on Argon2.

Each guess costs an Argon2 hash (19 MiB, tens of milliseconds). Before, 64
concurrent guessers with random names turned a 1 MiB v2 push from milliseconds
into seconds, because the hashes queued on the executor that blob I/O uses, and
nothing ever said no. Now hashes have their own small, bounded pool (503 when
it is full) and failed logins are throttled per address and per account (429
with ``Retry-After``), while a client whose password was already verified
keeps working.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from tests.auth.conftest import signed_up
from tests.conftest import Client
from tests.support.docker_v1 import basic
from tests.support.polling import eventually
from tests.support.v2client import V2Client

PER_ADDRESS = 5
ATTACKERS = 64


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        auth_mode="token",
        password_hash_threads=1,
        password_hash_queue=2,
        login_failures_per_address=PER_ADDRESS,
        login_failures_per_account=3,
        login_failure_window_seconds=60,
    )


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(settings))


async def _guess(client: Client, seen: Counter[int], retry_after: list[str]) -> None:
    auth = basic("user" + secrets.token_hex(4), secrets.token_hex(8))
    async with client.get("/v2/", headers={"Authorization": auth}) as resp:
        seen[resp.status] += 1
        if resp.status in (429, 503):
            retry_after.append(resp.headers["Retry-After"])


async def _guessers(client: Client, stop: asyncio.Event, seen: Counter[int], ra: list[str]) -> None:
    async def one() -> None:
        while not stop.is_set():
            await _guess(client, seen, ra)

    await asyncio.gather(*(one() for _ in range(ATTACKERS)))


async def test_guessing_cannot_slow_a_push_and_is_throttled(client: Client) -> None:
    alice = await signed_up(client, "alice")
    assert (await client.get("/v2/", headers=alice.basic)).status == 200  # verified once

    seen: Counter[int] = Counter()
    retry_after: list[str] = []
    stop = asyncio.Event()
    attack = asyncio.create_task(_guessers(client, stop, seen, retry_after))
    try:
        await eventually(lambda: seen.total() >= ATTACKERS, "the flood is under way")
        started = time.monotonic()
        await V2Client(client, alice.basic).push_image(
            "alice/app", "v1", [secrets.token_bytes(1024 * 1024)]
        )
        push_seconds = time.monotonic() - started
    finally:
        stop.set()
        await attack
    assert push_seconds < 30  # generous: the point is that it completes, with its password
    assert seen[429] > 0
    assert all(int(value) >= 1 for value in retry_after)
    assert set(seen) <= {401, 429, 503}
    # Only guesses admitted before the threshold were hashed at all.
    assert seen[401] <= PER_ADDRESS + 3
    # The owner, already verified, is not locked out by guesses from her own address.
    assert (await client.get("/v2/", headers=alice.basic)).status == 200


async def _from(client: Client, address: str, authorization: str) -> aiohttp.ClientResponse:
    """A request from another loopback address, as from another machine."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        resp = await http.get(
            client.make_url("/v1/users/"), headers={"Authorization": authorization}
        )
        await resp.read()
        return resp


async def test_guessing_one_account_from_many_addresses_is_throttled(client: Client) -> None:
    alice = await signed_up(client, "alice")
    assert (await client.get("/v1/users/", headers=alice.basic)).status == 200
    wrong = basic("alice", "not-her-password")
    statuses = [(await _from(client, f"127.0.0.{n}", wrong)).status for n in range(2, 6)]
    assert statuses == [401, 401, 401, 429]
    resp = await _from(client, "127.0.0.9", wrong)
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert "account" in (await resp.json())["error"]
    # Her own, already verified password still works, from anywhere.
    assert (await _from(client, "127.0.0.10", alice.basic["Authorization"])).status == 200
    # Another account is not affected.
    bob = await signed_up(client, "bob_b")
    assert (await _from(client, "127.0.0.11", bob.basic["Authorization"])).status == 200
