"""v2 path parts are parsed once per distinct text and kept in bounded caches: a cached
name or digest answers like a fresh parse, refusals are never kept, and endless distinct
names cannot grow the caches past their bound."""

from __future__ import annotations

import pytest

from registryd.v2 import url_grammar
from tests.conftest import Client
from tests.support.content import sha256
from tests.support.images import random_bytes
from tests.support.v2client import V2Client

DATA = random_bytes(3000, seed=11)


async def test_a_cached_name_and_digest_serve_the_same_blob(client: Client) -> None:
    await V2Client(client).push_blob("alice/app", DATA)
    path = f"/v2/alice/app/blobs/{sha256(DATA)}"
    for _ in range(3):
        resp = await client.get(path)
        assert resp.status == 200
        assert await resp.read() == DATA
    # Another repository's name in the cache does not make its blob readable here.
    resp = await client.get(f"/v2/alice/other/blobs/{sha256(DATA)}")
    assert resp.status == 404


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/Alice/app/blobs/sha256:" + "0" * 64, "NAME_INVALID"),
        ("/v2/alice/app/blobs/sha256:" + "0" * 63, "DIGEST_INVALID"),
    ],
)
async def test_refusals_are_never_cached(client: Client, path: str, code: str) -> None:
    for _ in range(2):
        resp = await client.get(path)
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["code"] == code
    text = path.split("/")[2] if code == "NAME_INVALID" else path.rsplit("/", 1)[1]
    assert text not in url_grammar._names
    assert text not in url_grammar._digests


async def test_distinct_names_cannot_grow_the_cache_past_its_bound(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(url_grammar, "PARSED_CACHE_ENTRIES", 3)
    for n in range(10):
        resp = await client.head(f"/v2/alice/app{n}/blobs/sha256:{n:064x}")
        assert resp.status == 404
        assert len(url_grammar._names) <= 3
        assert len(url_grammar._digests) <= 3
