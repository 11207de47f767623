"""What the v1 attacks share: raw registry calls as one user, and the stored state."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from registryd.config import Settings
from tests.support.docker_v1 import DockerV1
from tests.support.images import V1Image, make_chain, random_bytes, tar_layer
from tests.support.snapshot import snapshot
from tests.support.v1client import V1Client, chunked

# Tables of the index side that snapshot() leaves out, each in a full order.
_INDEX_TABLES = {
    "repository_images": "repository_id, image_id",
    "v1_image_owners": "image_id",
}


async def stored(db: asyncpg.Connection, settings: Settings) -> dict[str, Any]:
    """Everything stored, declared lists and image holders included."""
    state = await snapshot(db, settings)
    for table, order in _INDEX_TABLES.items():
        rows = await db.fetch(f"SELECT * FROM {table} ORDER BY {order}")
        state[table] = [dict(r) for r in rows]
    return state


def chain(prefix: str, size: int = 50_000) -> list[V1Image]:
    return make_chain(
        prefix,
        [
            tar_layer({"base": random_bytes(size, len(prefix))}),
            tar_layer({"app": prefix.encode()}),
        ],
    )


async def declare(user: DockerV1, repository: str, ids: list[str]) -> tuple[int, Any, str]:
    """The index call docker makes first; returns status, JSON body and the token."""
    status, body, headers = await user.index(
        "PUT", f"/v1/repositories/{repository}/", [{"id": i} for i in ids]
    )
    return status, json.loads(body) if body else None, headers.get("X-Docker-Token", "")


class Registry:
    """Registry calls with one Authorization header (a token, or Basic)."""

    def __init__(self, client: V1Client) -> None:
        self.client = client

    async def put_json(self, image: V1Image) -> tuple[int, Any]:
        status, body, _ = await self.client.call(
            "PUT", f"/v1/images/{image.image_id}/json", data=image.json
        )
        return status, json.loads(body)

    async def put_layer(self, image_id: str, layer: bytes) -> tuple[int, Any]:
        status, body, _ = await self.client.call(
            "PUT", f"/v1/images/{image_id}/layer", data=chunked(layer)
        )
        return status, json.loads(body)

    async def put_checksum(self, image_id: str, checksum: str) -> tuple[int, Any]:
        status, body, _ = await self.client.call(
            "PUT",
            f"/v1/images/{image_id}/checksum",
            headers={"X-Docker-Checksum-Payload": checksum},
        )
        return status, json.loads(body)

    async def tag(self, repository: str, tag: str, image_id: str) -> tuple[int, Any]:
        status, body, _ = await self.client.call(
            "PUT", f"/v1/repositories/{repository}/tags/{tag}", data=json.dumps(image_id)
        )
        return status, json.loads(body)


def registry(user: DockerV1, token: str | None = None) -> Registry:
    """Registry calls as docker makes them (``token``) or as curl does (Basic)."""
    auth = "Token " + token if token else user.basic["Authorization"]
    return Registry(V1Client(user.http, auth))
