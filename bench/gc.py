"""``python -m bench.gc``: how fast online garbage collection reclaims a large store.

Builds a store straight into PostgreSQL and the filesystem (going through HTTP would
take hours on a small machine): ``--repos`` repositories, each with manifests of
five blobs of their own (config and four layers), every blob a real file. The rows
are aged past the grace period and a first collection reviews everything once (what
a new store, or the migration's backfill, costs). Then half of the manifests are
deleted, as clients would, and the collection of that garbage is timed: manifests
dropped, links collected, blob rows deleted and files removed.

While it collects, 1 MiB pulls and manifest PUTs against a ``registryd serve`` on the
same database measure what collection costs the clients; the same load without
collection comes first, for comparison (``--no-load`` skips both).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import uvloop

from registryd.config import Settings
from registryd.db.embedded import EmbeddedPostgres, database_url, ensure_database
from registryd.db.migrate import apply_migrations
from registryd.db.pool import create_pool
from registryd.domain.services import Services
from registryd.gc.collector import Collector
from registryd.gc.report import Report
from registryd.storage import paths
from registryd.storage.filesystem import FilesystemBackend

BLOBS_PER_MANIFEST = 5
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MiB = 1024 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclasses.dataclass
class Store:
    blobs: int = 0
    bytes: int = 0
    garbage_manifests: list[tuple[int, str]] = dataclasses.field(default_factory=list)


def _write_files(root: Path, contents: list[bytes]) -> None:
    for content in contents:
        hex_ = hashlib.sha256(content).hexdigest()
        path = paths.blobs_dir(root) / "sha256" / hex_[:2] / hex_
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


async def build_store(
    conn: asyncpg.Connection, root: Path, repos: int, blobs: int, blob_bytes: int
) -> Store:
    """``blobs`` blobs in ``repos`` repositories; every other manifest is marked as garbage."""
    store = Store()
    per_repo = max(BLOBS_PER_MANIFEST, blobs // repos // BLOBS_PER_MANIFEST * BLOBS_PER_MANIFEST)
    for first in range(0, repos, 100):
        batch = range(first, min(repos, first + 100))
        repo_rows = await conn.fetch(
            "INSERT INTO repositories (namespace, name) SELECT 'bench', 'r' || n "
            "FROM unnest($1::int[]) AS n RETURNING repository_id",
            list(batch),
        )
        blob_rows, links, manifests, refs, tags, contents = [], [], [], [], [], []
        for r, row in zip(batch, repo_rows, strict=True):
            repository_id = row["repository_id"]
            for m in range(per_repo // BLOBS_PER_MANIFEST):
                layer_digests = []
                for b in range(BLOBS_PER_MANIFEST):
                    content = f"{r}/{m}/{b}/".encode().ljust(blob_bytes, b".")
                    digest = _digest(content)
                    contents.append(content)
                    blob_rows.append((digest, len(content)))
                    links.append((repository_id, digest))
                    layer_digests.append(digest)
                body = json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": MANIFEST,
                        "config": {"mediaType": "c", "digest": layer_digests[0], "size": 1},
                        "layers": [
                            {"mediaType": "l", "digest": d, "size": 1} for d in layer_digests[1:]
                        ],
                    }
                ).encode()
                manifest = _digest(body)
                manifests.append((repository_id, manifest, MANIFEST, body))
                refs += [(repository_id, manifest, d) for d in layer_digests]
                if m % 2:
                    store.garbage_manifests.append((repository_id, manifest))
                else:
                    tags.append((repository_id, f"t{m}", manifest))
        await asyncio.to_thread(_write_files, root, contents)
        async with conn.transaction():
            await conn.copy_records_to_table(
                "blobs", records=blob_rows, columns=["digest", "size_bytes"]
            )
            await conn.copy_records_to_table(
                "v2_repository_blobs", records=links, columns=["repository_id", "digest"]
            )
            await conn.copy_records_to_table(
                "v2_manifests",
                records=manifests,
                columns=["repository_id", "digest", "media_type", "body"],
            )
            await conn.copy_records_to_table(
                "v2_manifest_references",
                records=refs,
                columns=["repository_id", "manifest_digest", "digest"],
            )
            await conn.copy_records_to_table(
                "v2_tags", records=tags, columns=["repository_id", "tag", "manifest_digest"]
            )
        store.blobs += len(blob_rows)
        store.bytes += sum(size for _, size in blob_rows)
    for table, column in (
        ("blobs", "created_at"),
        ("v2_repository_blobs", "created_at"),
        ("v2_manifests", "created_at"),
    ):
        await conn.execute(f"UPDATE {table} SET {column} = {column} - interval '2 hours'")
    await conn.execute("VACUUM ANALYZE")
    return store


async def delete_garbage(conn: asyncpg.Connection, store: Store) -> None:
    """What clients do: DELETE the manifests by digest (the triggers queue the reviews)."""
    await conn.execute(
        """
        DELETE FROM v2_manifests m USING unnest($1::bigint[], $2::text[]) AS g (r, d)
        WHERE m.repository_id = g.r AND m.digest = g.d
        """,
        [r for r, _ in store.garbage_manifests],
        [d for _, d in store.garbage_manifests],
    )


# Client load ---------------------------------------------------------------------------


@dataclasses.dataclass
class Latencies:
    pulls: list[float] = dataclasses.field(default_factory=list)
    puts: list[float] = dataclasses.field(default_factory=list)
    # When each request started (time.perf_counter()), to cut out a window.
    pull_starts: list[float] = dataclasses.field(default_factory=list)
    put_starts: list[float] = dataclasses.field(default_factory=list)

    def window(self, start: float, end: float) -> Latencies:
        """Only the requests that started between ``start`` and ``end``."""
        pulls = [
            (t, v) for t, v in zip(self.pull_starts, self.pulls, strict=True) if start <= t < end
        ]
        puts = [(t, v) for t, v in zip(self.put_starts, self.puts, strict=True) if start <= t < end]
        return Latencies(
            [v for _, v in pulls], [v for _, v in puts], [t for t, _ in pulls], [t for t, _ in puts]
        )

    @staticmethod
    def _pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def row(self, label: str) -> str:
        return (
            f"| {label} | {len(self.pulls)} | {self._pct(self.pulls, 0.5):.1f} | "
            f"{self._pct(self.pulls, 0.99):.1f} | {len(self.puts)} | "
            f"{self._pct(self.puts, 0.5):.1f} | {self._pct(self.puts, 0.99):.1f} |"
        )


async def _seed_load(url: str) -> tuple[str, bytes, bytes]:
    """A 1 MiB blob and a config in bench/load, and a manifest body to PUT."""
    layer = os.urandom(MiB)
    config = b'{"architecture":"amd64","os":"linux"}'
    async with aiohttp.ClientSession(base_url=url) as http:
        for blob in (config, layer):
            async with http.post(
                f"/v2/bench/load/blobs/uploads/?digest={_digest(blob)}", data=blob
            ) as resp:
                assert resp.status == 201, await resp.text()
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": "c", "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": "l", "digest": _digest(layer), "size": len(layer)}],
        }
    ).encode()
    return _digest(layer), body, config


async def run_load(url: str, layer: str, body: bytes, until: asyncio.Event) -> Latencies:
    """8 concurrent 1 MiB pullers and one manifest pusher until ``until`` is set."""
    result = Latencies()

    async def puller(http: aiohttp.ClientSession) -> None:
        while not until.is_set():
            started = time.perf_counter()
            async with http.get(f"/v2/bench/load/blobs/{layer}") as resp:
                await resp.read()
                assert resp.status == 200
            result.pulls.append(time.perf_counter() - started)
            result.pull_starts.append(started)

    async def pusher(http: aiohttp.ClientSession) -> None:
        n = 0
        while not until.is_set():
            n += 1
            started = time.perf_counter()
            async with http.put(
                f"/v2/bench/load/manifests/p{n % 50}",
                data=body,
                headers={"Content-Type": MANIFEST},
            ) as resp:
                assert resp.status == 201, await resp.text()
            result.puts.append(time.perf_counter() - started)
            result.put_starts.append(started)
            await asyncio.sleep(0.01)

    async with aiohttp.ClientSession(base_url=url) as http:
        await asyncio.gather(*(puller(http) for _ in range(8)), pusher(http))
    return result


@contextlib.contextmanager
def _server(data_dir: Path, url: str, port: int) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRYD_")}
    env.update(
        REGISTRYD_DATABASE_URL=url,
        REGISTRYD_DATA_DIR=str(data_dir),
        REGISTRYD_PORT=str(port),
        REGISTRYD_AUTH_MODE="none",
        REGISTRYD_GC_INTERVAL_SECONDS="0",
        REGISTRYD_LOG_LEVEL="warning",
    )
    script = Path(sys.executable).parent / "registryd"
    proc = subprocess.Popen([str(script), "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                subprocess.run(
                    ["curl", "-sf", base + "/v2/"], check=True, capture_output=True, timeout=2
                )
                break
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


# The run ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _database(external: str | None, workdir: Path) -> AsyncIterator[str]:
    if external:
        yield external
        return
    embedded = EmbeddedPostgres(workdir / "postgres")
    server = await asyncio.to_thread(embedded.start)
    try:
        await ensure_database(server, "bench_gc")
        yield database_url(server, "bench_gc")
    finally:
        await asyncio.to_thread(embedded.stop)


async def _collect(svc: Services) -> Report:
    return await Collector(svc).run()


async def _collect_in_process(settings: Settings) -> Report:
    """``registryd gc`` as its own process, as an operator (or another replica) runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRYD_")}
    env.update(
        REGISTRYD_DATABASE_URL=str(settings.database_url),
        REGISTRYD_DATA_DIR=str(settings.data_dir),
        REGISTRYD_GC_MAX_SECONDS="3600",
        REGISTRYD_GC_MAX_DELETES_PER_SECOND=str(settings.gc_max_deletes_per_second),
        REGISTRYD_LOG_FORMAT="json",
    )
    script = Path(sys.executable).parent / "registryd"
    proc = await asyncio.create_subprocess_exec(
        str(script),
        "gc",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    for line in err.decode().splitlines():
        if '"gc_blobs"' in line:
            fields = json.loads(line)
            report = Report(
                links=0,
                blobs=[("", 0)] * fields["gc_blobs"],
                files_removed=fields["gc_files_removed"],
                bytes_freed=fields["gc_bytes_freed"],
                seconds=fields["gc_seconds"],
            )
            return report
    raise AssertionError("registryd gc logged no counts: " + err.decode()[-2000:])


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="registryd-bench-gc-"))
    await asyncio.to_thread(workdir.chmod, 0o755)  # embedded PostgreSQL may run as another user
    try:
        async with _database(args.database_url, workdir) as url:
            conn = await asyncpg.connect(url)
            await apply_migrations(conn)
            settings = Settings(
                data_dir=workdir / "data",
                database_url=url,
                gc_grace_seconds=3600,
                gc_max_seconds=3600,
                db_pool_min_size=1,
                db_pool_max_size=4,
                gc_max_deletes_per_second=args.max_deletes_per_second,
            )
            root = settings.storage_root
            started = time.monotonic()
            store = await build_store(conn, root, args.repos, args.blobs, args.blob_bytes)
            print(
                f"built {store.blobs} blobs ({store.bytes / MiB:.0f} MiB) in {args.repos} "
                f"repositories in {time.monotonic() - started:.0f}s",
                flush=True,
            )
            storage = FilesystemBackend(root, open_files=0)
            await storage.start()
            pool = await create_pool(url, settings)
            svc = Services(pool, storage, settings, b"")
            first = await _collect(svc)
            print(f"first review of the whole store: {first.seconds:.1f}s", flush=True)

            await delete_garbage(conn, store)
            rows = await conn.fetchval(
                "SELECT (SELECT count(*) FROM gc_link_reviews)"
                " + (SELECT count(*) FROM gc_manifest_reviews)"
            )
            gc_cpu = None
            if args.no_load:
                report = await _collect(svc)
                idle = during = None
            else:
                with _server(settings.data_dir, url, args.port) as base:
                    layer, body, _ = await _seed_load(base)
                    stop = asyncio.Event()
                    load = asyncio.create_task(run_load(base, layer, body, stop))
                    await asyncio.sleep(args.idle_seconds)
                    stop.set()
                    idle = await load
                    stop = asyncio.Event()
                    load = asyncio.create_task(run_load(base, layer, body, stop))
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    report = await _collect_in_process(settings)
                    ended = time.perf_counter()
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    gc_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                    stop.set()
                    # The collection itself, not the start-up of its process.
                    during = (await load).window(ended - report.seconds, ended)
            await pool.close()
            left = await conn.fetchval("SELECT count(*) FROM blobs")
            await conn.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    garbage = len(report.blobs)
    print()
    print(f"| store | {store.blobs} blobs, {args.repos} repositories, {args.blob_bytes} B each |")
    print("|---|---|")
    print(
        f"| garbage | {len(store.garbage_manifests)} manifests deleted by clients, queued as "
        f"{rows} reviews |"
    )
    print(
        f"| collected | {garbage} blobs, "
        f"{report.bytes_freed / MiB:.0f} MiB in {report.files_removed} files |"
    )
    print(f"| collection time | {report.seconds:.1f} s |")
    print(f"| gc_max_deletes_per_second | {args.max_deletes_per_second or 'no limit'} |")
    print(f"| blobs per second | {garbage / report.seconds:.0f} |")
    print(f"| bytes per second | {report.bytes_freed / MiB / report.seconds:.1f} MiB/s |")
    print(f"| blobs left (live) | {left} |")
    if gc_cpu is not None:
        print(
            f"| CPU of the `registryd gc` process | {gc_cpu:.1f} s, start-up included "
            f"({gc_cpu / report.seconds:.0%} of one core over the collection; "
            "PostgreSQL's share not counted) |"
        )
    print(f"| first review of the whole store | {first.seconds:.1f} s |")
    if idle is not None and during is not None:
        print()
        print("| load | pulls | pull p50 ms | pull p99 ms | PUTs | PUT p50 ms | PUT p99 ms |")
        print("|---|---|---|---|---|---|---|")
        print(idle.row("idle"))
        print(during.row("during collection"))
        ratio = Latencies._pct(during.pulls, 0.99) / Latencies._pct(idle.pulls, 0.99)
        print(f"\npull p99 during collection / idle: {ratio:.2f}x")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gc", description=__doc__)
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--blob-bytes", type=int, default=2048)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=5077)
    parser.add_argument("--no-load", action="store_true", help="time the collection only")
    parser.add_argument(
        "--max-deletes-per-second",
        type=int,
        default=0,
        help="gc_max_deletes_per_second of the collection (default 0: no limit)",
    )
    parser.add_argument(
        "--database-url", default=None, help="an empty PostgreSQL database (default: embedded)"
    )
    return parser


if __name__ == "__main__":
    uvloop.run(main(_parser().parse_args()))
