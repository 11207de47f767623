"""Deterministic blobs, seeding them into each target, and the operations a run repeats.

registryd is spoken to through the v1 API here (PUT json, PUT layer, PUT checksum;
the v2 flows are in ``bench/v2.py``), distribution through v2 (POST + PUT, or
POST + PATCH + PUT for streamed ones), nginx through files in its root. Push
bodies are unique per push (a counter in the last bytes, or in every 1 MiB
block of a streamed one) so no store can deduplicate them, and are generated
while sent, never held whole.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import hashlib
import itertools
import json
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.loadgen import Connection, HttpError, Operation, Response

MiB = 1024 * 1024
SEND_CHUNK_BYTES = MiB
REPOSITORY = "bench/app"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def blob_bytes(label: str, size: int) -> bytes:
    return random.Random(label).randbytes(size)


def image_id(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def image_json(iid: str) -> bytes:
    return json.dumps({"id": iid, "created": "2014-06-01T00:00:00Z"}).encode()


@dataclass(frozen=True)
class Blob:
    label: str
    size: int
    digest_hex: str
    image_id: str

    def path(self, target: str) -> str:
        if target == "registryd":
            return f"/v1/images/{self.image_id}/layer"
        if target == "distribution":
            return f"/v2/{REPOSITORY}/blobs/sha256:{self.digest_hex}"
        return f"/blobs/{self.digest_hex}"


def _check(resp: Response, *expected: int) -> Response:
    if resp.status not in expected:
        raise HttpError(f"HTTP {resp.status}: {resp.body[:200]!r}")
    return resp


async def _chunks(data: bytes | memoryview) -> AsyncIterator[bytes | memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), SEND_CHUNK_BYTES):
        yield view[start : start + SEND_CHUNK_BYTES]


def _location(resp: Response) -> str:
    parts = urlsplit(resp.headers["location"])
    return parts.path + ("?" + parts.query if parts.query else "")


async def v1_push(
    conn: Connection,
    iid: str,
    layer: bytes | memoryview,
    size: int,
    body: AsyncIterator[bytes | memoryview] | None = None,
    payload_hex: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """PUT json, PUT layer, PUT checksum (v1 spec §5.2-§5.4).

    ``payload_hex`` is the payload checksum (sha256 of json, newline, layer),
    by default computed from ``layer`` here. ``headers`` go with every request.
    """
    headers = headers or {}
    body_json = image_json(iid)
    _check(
        await conn.request(
            "PUT", f"/v1/images/{iid}/json", headers=headers, body=body_json, keep_body=True
        ),
        200,
    )
    if payload_hex is None:
        payload = hashlib.sha256(body_json + b"\n")
        payload.update(layer)
        payload_hex = payload.hexdigest()
    _check(
        await conn.request(
            "PUT",
            f"/v1/images/{iid}/layer",
            headers=headers,
            body=body or _chunks(layer),
            body_bytes=size,
            keep_body=True,
        ),
        200,
    )
    checksum = {**headers, "X-Docker-Checksum-Payload": "sha256:" + payload_hex}
    _check(
        await conn.request("PUT", f"/v1/images/{iid}/checksum", headers=checksum, keep_body=True),
        200,
    )


async def seed_registryd(conn: Connection, blobs: list[Blob]) -> None:
    for blob in blobs:
        layer = blob_bytes(blob.label, blob.size)
        resp = await conn.request("GET", f"/v1/images/{blob.image_id}/json")
        if resp.status != 200:
            await v1_push(conn, blob.image_id, layer, len(layer))
    top = blobs[0].image_id
    _check(
        await conn.request(
            "PUT", f"/v1/repositories/{REPOSITORY}/tags/latest", body=json.dumps(top).encode()
        ),
        200,
    )


async def seed_registryd_with_token(
    conn: Connection, blobs: list[Blob], user: str, password: str, repository: str = REPOSITORY
) -> dict[str, str]:
    """Seed a registryd in token mode the way docker 1.x pushes (the index hands out a
    write token, then a read token); return the headers of a pull with that read token."""
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    index = {"Authorization": f"Basic {basic}", "X-Docker-Token": "true"}
    images = json.dumps([{"id": blob.image_id} for blob in blobs]).encode()
    repo = f"/v1/repositories/{repository}"
    resp = _check(await conn.request("PUT", f"{repo}/", headers=index, body=images), 200)
    write = {"Authorization": "Token " + resp.headers["x-docker-token"]}
    for blob in blobs:
        layer = blob_bytes(blob.label, blob.size)
        await v1_push(conn, blob.image_id, layer, len(layer), headers=write)
    resp = _check(await conn.request("GET", f"{repo}/images", headers=index, keep_body=True), 200)
    return {"Authorization": "Token " + resp.headers["x-docker-token"]}


def seed_files(root: Path, blobs: list[Blob]) -> None:
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for blob in blobs:
        path = root / "blobs" / blob.digest_hex
        if not path.exists():
            path.write_bytes(blob_bytes(blob.label, blob.size))


def make_blob(label: str, size: int) -> Blob:
    return Blob(label, size, hashlib.sha256(blob_bytes(label, size)).hexdigest(), image_id(label))


# Operations -------------------------------------------------------------------


def pulls(
    target: str, blobs: list[Blob], headers: dict[str, str] | None = None
) -> Iterator[Operation]:
    """GET each blob in turn, forever; each operation returns the body bytes received."""
    n = 0
    while True:
        path = blobs[n % len(blobs)].path(target)
        n += 1

        async def pull(conn: Connection, path: str = path) -> int:
            return _check(await conn.request("GET", path, headers=headers), 200).body_bytes

        yield pull


class UniqueLayers:
    """16 MiB-style push bodies: one shared buffer whose last 16 bytes make each unique.

    ``next_number`` never repeats for one instance, across every run that
    shares it, so a repeated point cannot push an image id that already exists.

    A v1 push must send ``sha256(json + "\n" + layer)``, one full pass over
    the layer per image (the json names the image, so no hash state can be
    shared). ``prepare`` computes those before a run's clock starts: hashed
    inside the run, the load generator would spend ~50 ms of CPU per 16 MiB
    push, which lands on the server's core in the unpinned sections.
    ``hashed_in_run`` counts the pushes that still had to be hashed inside one.
    """

    def __init__(self, size: int, nonce: str) -> None:
        self.base = blob_bytes("push-base", size)
        self.prefix = memoryview(self.base)[:-16]
        self._prefix_hash = hashlib.sha256(self.prefix)
        self.nonce = nonce
        self.size = size
        self._numbers = itertools.count(1)
        self._ready: collections.deque[tuple[int, str, str]] = collections.deque()
        self.hashed_in_run = 0

    def next_number(self) -> int:
        return next(self._numbers)

    def suffix(self, n: int) -> bytes:
        return hashlib.sha256(f"{self.nonce}-{n}".encode()).digest()[:16]

    async def body(self, n: int) -> AsyncIterator[bytes | memoryview]:
        async for chunk in _chunks(self.prefix):
            yield chunk
        yield self.suffix(n)

    def digest_hex(self, n: int) -> str:
        digest = self._prefix_hash.copy()
        digest.update(self.suffix(n))
        return digest.hexdigest()

    def image_id(self, n: int) -> str:
        return image_id(f"{self.nonce}-push-{n}")

    def payload_hex(self, n: int) -> str:
        """The v1 payload checksum of push ``n``; blocks (hashes the layer)."""
        payload = hashlib.sha256(image_json(self.image_id(n)) + b"\n")
        payload.update(self.prefix)
        payload.update(self.suffix(n))
        return payload.hexdigest()

    async def prepare(self, count: int) -> None:
        """Have at least ``count`` v1 pushes hashed, on as many threads as CPUs we may use."""
        missing = [self.next_number() for _ in range(count - len(self._ready))]
        threads = len(os.sched_getaffinity(0))
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            loop = asyncio.get_running_loop()
            hexes = await asyncio.gather(
                *(loop.run_in_executor(pool, self.payload_hex, n) for n in missing)
            )
        self._ready.extend((n, self.image_id(n), h) for n, h in zip(missing, hexes, strict=True))

    async def take_v1(self) -> tuple[int, str, str]:
        """A prepared (number, image id, payload checksum), or one hashed now on a thread."""
        if self._ready:
            return self._ready.popleft()
        self.hashed_in_run += 1
        n = self.next_number()
        return n, self.image_id(n), await asyncio.to_thread(self.payload_hex, n)


def pushes(target: str, layers: UniqueLayers) -> Iterator[Operation]:
    while True:

        async def push(conn: Connection) -> int:
            if target == "registryd":
                n, iid, payload_hex = await layers.take_v1()
                await v1_push(
                    conn, iid, b"", layers.size, body=layers.body(n), payload_hex=payload_hex
                )
            else:
                n = layers.next_number()
                resp = _check(
                    await conn.request("POST", f"/v2/{REPOSITORY}/blobs/uploads/", body=b""), 202
                )
                sep = "&" if "?" in _location(resp) else "?"
                url = f"{_location(resp)}{sep}digest=sha256:{layers.digest_hex(n)}"
                _check(
                    await conn.request("PUT", url, body=layers.body(n), body_bytes=layers.size), 201
                )
            return layers.size

        yield push


class StreamedLayer:
    """A large layer generated 1 MiB block at a time (block i carries (n, i)), hashed as sent."""

    def __init__(self, size: int, n: int, nonce: str) -> None:
        self.size, self.n, self.nonce = size, n, nonce
        self.block = blob_bytes("big-base", MiB)

    async def body(self, *hashes: hashlib._Hash) -> AsyncIterator[bytes | memoryview]:
        for i in range(self.size // MiB):
            chunk = f"{self.nonce}:{self.n}:{i:08d}".encode().ljust(32) + self.block[32:]
            for h in hashes:
                h.update(chunk)
            yield chunk


def big_pushes(target: str, size: int, nonce: str, pushed: list[str]) -> Iterator[Operation]:
    """Push distinct streamed layers; ``pushed`` collects the paths to pull them back.

    Call it once per ``nonce`` and server: the numbers restart at 1.
    """
    n = 0
    while True:
        n += 1

        async def push(conn: Connection, n: int = n) -> int:
            layer = StreamedLayer(size, n, nonce)
            digest = hashlib.sha256()
            if target == "registryd":
                iid = image_id(f"{nonce}-big-{n}")
                payload = hashlib.sha256(image_json(iid) + b"\n")
                _check(
                    await conn.request("PUT", f"/v1/images/{iid}/json", body=image_json(iid)), 200
                )
                _check(
                    await conn.request(
                        "PUT", f"/v1/images/{iid}/layer", body=layer.body(payload), body_bytes=size
                    ),
                    200,
                )
                checksum = {"X-Docker-Checksum-Payload": "sha256:" + payload.hexdigest()}
                _check(
                    await conn.request("PUT", f"/v1/images/{iid}/checksum", headers=checksum), 200
                )
                pushed.append(f"/v1/images/{iid}/layer")
            else:
                resp = _check(
                    await conn.request("POST", f"/v2/{REPOSITORY}/blobs/uploads/", body=b""), 202
                )
                resp = _check(
                    await conn.request(
                        "PATCH", _location(resp), body=layer.body(digest), body_bytes=size
                    ),
                    202,
                )
                sep = "&" if "?" in _location(resp) else "?"
                url = f"{_location(resp)}{sep}digest=sha256:{digest.hexdigest()}"
                _check(await conn.request("PUT", url, body=b""), 201)
                pushed.append(f"/v2/{REPOSITORY}/blobs/sha256:{digest.hexdigest()}")
            return size

        yield push


def paths_pulls(paths: list[str]) -> Iterator[Operation]:
    n = 0
    while True:
        path = paths[n % len(paths)]
        n += 1

        async def pull(conn: Connection, path: str = path) -> int:
            return _check(await conn.request("GET", path), 200).body_bytes

        yield pull
