"""A rollout: N nodes pull the same image at once, each through the whole v2 flow.

Each simulated node does what containerd does for ``ctr image pull`` / a kubelet:
HEAD the manifest by tag; on a 401 challenge trade its credentials for a Bearer
token at ``/v2/token`` and HEAD again; GET the manifest by digest, then the
config; then the layers, three at a time on three connections (containerd's
default ``max_concurrent_downloads``). Every body is counted and its size
checked. A node's time runs from its first request to its last layer.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass

from bench import v2
from bench.loadgen import Connection, HttpError, RunResult
from bench.workloads import _check

PARALLEL_LAYERS = 3
# Per connection: 1,500 connections (500 nodes x 3) with the default 1 MiB would be 1.5 GB.
RECV_BUFFER_BYTES = 256 * 1024


@dataclass(frozen=True)
class Node:
    host: str
    port: int
    tag: str
    authorization: str | None  # the node's Basic credentials, or None
    tls: ssl.SSLContext | None = None

    def connection(self) -> Connection:
        return Connection(self.host, self.port, self.tls, RECV_BUFFER_BYTES)

    async def pull(self) -> int:
        """The whole pull; returns the bytes received (manifest, config and layers)."""
        conns = [self.connection() for _ in range(PARALLEL_LAYERS)]
        try:
            conn = conns[0]
            headers = {"Accept": v2.ACCEPT}
            resp = await conn.request("HEAD", v2.manifest_path(self.tag), headers=headers)
            if resp.status == 401:
                headers["Authorization"] = "Bearer " + await v2.token(
                    conn, "pull", self.authorization
                )
                resp = await conn.request("HEAD", v2.manifest_path(self.tag), headers=headers)
            digest = _check(resp, 200).headers["docker-content-digest"]
            manifest = _check(
                await conn.request(
                    "GET", v2.manifest_path(digest), headers=headers, keep_body=True
                ),
                200,
            )
            body = json.loads(manifest.body)
            moved = manifest.body_bytes
            moved += await _get(conn, body["config"], headers)
            layers = list(body["layers"])

            async def downloader(conn: Connection) -> int:
                got = 0
                while layers:
                    got += await _get(conn, layers.pop(0), headers)
                return got

            return moved + sum(await asyncio.gather(*(downloader(c) for c in conns)))
        finally:
            for conn in conns:
                conn.close()


async def _get(conn: Connection, descriptor: dict[str, object], headers: dict[str, str]) -> int:
    digest = str(descriptor["digest"]).removeprefix("sha256:")
    resp = _check(await conn.request("GET", v2.blob_path(digest), headers=headers), 200)
    if resp.body_bytes != descriptor["size"]:
        raise HttpError(
            f"blob {digest[:12]}: {resp.body_bytes} bytes, expected {descriptor['size']}"
        )
    return resp.body_bytes


async def rollout(node: Node, nodes: int) -> RunResult:
    """``nodes`` pulls started at once; latencies are the nodes' times, ``seconds`` the time
    until every node has the image (or failed)."""
    result = RunResult()
    started = time.perf_counter()

    async def one() -> None:
        t0 = time.perf_counter()
        try:
            moved = await node.pull()
        except (OSError, HttpError, KeyError, ValueError) as exc:
            result.errors += 1
            result.error_kinds[f"{type(exc).__name__}: {exc}"[:160]] += 1
            return
        result.latencies.append(time.perf_counter() - t0)
        result.requests += 1
        result.body_bytes += moved

    await asyncio.gather(*(one() for _ in range(nodes)))
    result.seconds = time.perf_counter() - started
    return result
