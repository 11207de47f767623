"""Attack: another local user reads private layers straight from the store.

The server is the store's only reader: files 0600, directories 0700.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

from registryd.config import Settings
from registryd.storage import paths
from tests.conftest import Client
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client
from tests.support.v2client import V2Client


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_blobs_and_uploads_are_private_to_the_server(
    client: Client, settings: Settings
) -> None:
    await V1Client(client).push("alice/app", "latest", [make_image("modes", random_bytes(5000, 7))])
    await V2Client(client).push_blob("alice/app", b"v2 blob bytes")

    async def body() -> AsyncIterator[bytes]:
        yield b"pending"

    resp = await client.post("/v2/alice/app/blobs/uploads/")
    resp = await client.patch(resp.headers["Location"], data=body())
    assert resp.status == 202

    root = settings.storage_root
    files = [p for p in root.rglob("*") if p.is_file()]
    directories = [root, *(p for p in root.rglob("*") if p.is_dir())]
    assert (
        len([f for f in files if f.is_relative_to(paths.blobs_dir(root))]) == 2
    )  # the v1 layer, the v2 blob
    assert any(f.is_relative_to(paths.uploads_dir(root)) for f in files)
    assert {str(f): oct(_mode(f)) for f in files if _mode(f) != 0o600} == {}
    assert {str(d): oct(_mode(d)) for d in directories if _mode(d) != 0o700} == {}
