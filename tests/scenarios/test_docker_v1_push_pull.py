"""A docker 1.x client's push and pull of a three-layer image, call for call (v1 spec §9)."""

from __future__ import annotations

from registryd.config import Settings
from tests.conftest import Client
from tests.support.images import make_chain, random_bytes, tar_layer
from tests.support.store import blob_files
from tests.support.v1client import V1Client


def three_layers() -> list[bytes]:
    return [
        tar_layer({"etc/os-release": b"ID=registryd-test\n", "bin/sh": random_bytes(200_000, 10)}),
        tar_layer({"usr/lib/libapp.so": random_bytes(1_500_000, 11)}),
        tar_layer({"app/main.py": b"print('hello')\n", "app/data.bin": random_bytes(50_000, 12)}),
    ]


async def test_push_then_pull_three_layers(client: Client, settings: Settings) -> None:
    docker = V1Client(client)
    assert (await client.get("/v1/_ping")).status == 200
    chain = make_chain("app", three_layers())
    assert await docker.push("alice/app", "latest", chain) == ["pushed"] * 3

    pulled = await docker.pull("alice/app", "latest")
    assert [(iid, j, layer) for iid, j, layer in pulled] == [
        (image.image_id, image.json, image.layer) for image in chain
    ]
    assert len(blob_files(settings)) == 3


async def test_second_push_skips_existing_layers(client: Client) -> None:
    docker = V1Client(client)
    base = make_chain("shared", three_layers())
    await docker.push("alice/app", "v1", base)
    # A new top layer on the same base: docker finds the base images with GET json.
    extended = make_chain("shared", [*(i.layer for i in base), tar_layer({"new": b"x"})])
    assert await docker.push("alice/app", "v2", extended) == ["exists"] * 3 + ["pushed"]
    assert len(await docker.pull("alice/app", "v2")) == 4


async def test_library_push_and_pull(client: Client) -> None:
    docker = V1Client(client)
    chain = make_chain("lib", three_layers()[:1])
    await docker.push("busybox", "latest", chain)  # docker writes tags without library/
    pulled = await docker.pull("library/busybox", "latest")  # and reads them with it
    assert pulled[0][2] == chain[0].layer
