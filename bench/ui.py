"""``python -m bench.ui``: how long the web UI takes per page for a repository of 5,000 tags.

A throwaway embedded PostgreSQL (or ``REGISTRYD_DATABASE_URL``'s server) gets a fresh
database; one repository is filled with 5,000 distinct image manifests (config + layer
blobs each), tagged, plus a signature per 100th image, by SQL (pushing 5,000 manifests
through the API measures the API, not the pages). registryd then serves on 127.0.0.1 in
this process and each page is fetched ``--repeat`` times over keep-alive HTTP; the
numbers are wall time per request on the client (an upper bound of server time).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from registryd.app import create_app
from registryd.config import Settings
from registryd.db.embedded import EmbeddedPostgres, database_url
from registryd.db.migrate import apply_migrations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BUDGET_MS = 50.0


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(i: int) -> tuple[bytes, str, str]:
    config = _digest(b"config %d" % i)
    layer = _digest(b"layer %d" % i)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": 600,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer,
                    "size": 3_000_000 + i,
                }
            ],
        }
    ).encode()
    return body, config, layer


async def seed(url: str, tags: int) -> str:
    """One repository ``bench/big`` with ``tags`` tagged images; return one image's digest."""
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
        repo_id = await conn.fetchval(
            "INSERT INTO repositories (namespace, name) VALUES ('bench', 'big') "
            "RETURNING repository_id"
        )
        manifests = [_manifest(i) for i in range(tags)]
        blobs = [(d, 600) for _, d, _ in manifests] + [
            (layer, 3_000_000 + i) for i, (_, _, layer) in enumerate(manifests)
        ]
        await conn.executemany("INSERT INTO blobs (digest, size_bytes) VALUES ($1, $2)", blobs)
        await conn.executemany(
            "INSERT INTO v2_repository_blobs (repository_id, digest) VALUES ($1, $2)",
            [(repo_id, d) for d, _ in blobs],
        )
        await conn.executemany(
            "INSERT INTO v2_manifests (repository_id, digest, media_type, body, artifact_type)"
            " VALUES ($1, $2, $3, $4, 'application/vnd.oci.image.config.v1+json')",
            [(repo_id, _digest(body), OCI_MANIFEST, body) for body, _, _ in manifests],
        )
        await conn.executemany(
            "INSERT INTO v2_manifest_references (repository_id, manifest_digest, digest)"
            " VALUES ($1, $2, $3)",
            [
                (repo_id, _digest(body), ref)
                for body, config, layer in manifests
                for ref in (config, layer)
            ],
        )
        await conn.executemany(
            "INSERT INTO v2_tags (repository_id, tag, manifest_digest) VALUES ($1, $2, $3)",
            [(repo_id, f"v{i:05}", _digest(body)) for i, (body, _, _) in enumerate(manifests)],
        )
        await conn.execute("ANALYZE")
        return _digest(manifests[tags // 2][0])
    finally:
        await conn.close()


async def measure(base: str, pages: dict[str, str], repeat: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in pages}
    async with aiohttp.ClientSession(base) as session:
        for _ in range(repeat):
            for name, path in pages.items():
                started = time.perf_counter()
                async with session.get(path) as resp:
                    await resp.read()
                    assert resp.status == 200, (path, resp.status)
                timings[name].append((time.perf_counter() - started) * 1000)
    return timings


async def run(server_url: str, data_dir: Path, tags: int, repeat: int) -> bool:
    name = "bench_ui_" + secrets.token_hex(4)
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = database_url(server_url, name)
    try:
        digest = await seed(url, tags)
        settings = Settings(
            auth_mode="none", data_dir=data_dir, database_url=url, token_secret="b" * 40
        )
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        pages = {
            "catalog": "/ui/",
            "repository, first page": "/ui/r/bench/big",
            "repository, page 50": "/ui/r/bench/big?page=50",
            "repository, last page": f"/ui/r/bench/big?page={-(-tags // 50)}",
            "repository, tag filter": "/ui/r/bench/big?q=v049",
            "image": f"/ui/r/bench/big/-/manifest/{digest}",
        }
        try:
            await measure(f"http://127.0.0.1:{port}", pages, 3)  # warm caches and statements
            timings = await measure(f"http://127.0.0.1:{port}", pages, repeat)
        finally:
            await runner.cleanup()
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    print(f"UI page times, one repository of {tags} tags, {repeat} requests each (ms):")
    print(f"{'page':<26} {'median':>8} {'p95':>8} {'max':>8}")
    ok = True
    for page, values in timings.items():
        values.sort()
        p95 = values[max(0, int(len(values) * 0.95) - 1)]
        median = statistics.median(values)
        ok = ok and median < BUDGET_MS
        print(f"{page:<26} {median:8.1f} {p95:8.1f} {values[-1]:8.1f}")
    print(f"budget: median < {BUDGET_MS:.0f} ms per page: {'met' if ok else 'MISSED'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__)
    parser.add_argument("--tags", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="registryd-bench-ui-"))
    external = Settings.from_env().database_url
    embedded = None if external else EmbeddedPostgres(workdir / "postgres")
    try:
        server_url = external or embedded.start()  # type: ignore[union-attr]
        ok = asyncio.run(run(server_url, workdir / "data", args.tags, args.repeat))
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
