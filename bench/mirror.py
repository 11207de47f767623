"""``python -m bench.mirror``: pulls through a pull-through cache, registryd next to
distribution 2.8 in proxy mode (``proxy.remoteurl``), both mirroring one registryd upstream.

For each layer size and concurrency: a cold pull (the layer is new to the mirror)
and a warm one (cached), time to the last byte of the last client, and the blob
bytes the upstream sent for the cold pull (from its own metrics). Everything
listens on 127.0.0.1 in a temp dir.

Two clients: ``python`` (aiohttp in this process, re-hashing every client's bytes
inside the timed pull: at c = 16 on a small machine the hashing, not the mirror,
can bound the time) and ``curl`` (one curl process per client writing to
/dev/null, sizes checked; every target's bytes are then re-hashed once, untimed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.targets import Server, _spawn, find_binary, free_port, start_registryd

MiB = 1024 * 1024
NAMESPACE = "up.bench"
REPOSITORY = "bench/img"
DIRECT = "direct (upstream)"
_SENT_BLOB_BYTES = re.compile(
    r"^registryd_http_sent_bytes_total"
    r'\{method="GET",route="/v2/\{name\}/blobs/\{digest\}"\} (\S+)$',
    re.M,
)


def start_registryd_mirror(workdir: Path, upstream_url: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRYD_")}
    env["REGISTRYD_AUTH_MODE"] = "none"
    env["REGISTRYD_UPSTREAMS"] = f'[{{namespace = "{NAMESPACE}", url = "{upstream_url}"}}]'
    argv = [
        sys.executable,
        "-m",
        "registryd",
        "serve",
        "--data-dir",
        str(workdir / "data"),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    server = _spawn("registryd-mirror", workdir, port, argv, env)
    server.wait_ready("/v1/_ping")
    return server


def start_distribution_proxy(workdir: Path, upstream_url: str) -> Server:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {workdir / "data"}
http:
  addr: 127.0.0.1:{port}
proxy:
  remoteurl: {upstream_url}
"""
    )
    exe = find_binary("docker-registry")
    if exe is None:
        raise SystemExit("docker-registry (distribution 2.8) is not installed")
    server = _spawn("distribution-proxy", workdir, port, [exe, "serve", str(config)])
    server.wait_ready("/v2/")
    return server


class Link:
    """The mirrors' link to the upstream, at ``bytes_per_second`` shared by every response
    through it (a WAN uplink, where the upstream's bytes are what costs): a reverse proxy
    in this process that paces the bodies it forwards."""

    def __init__(self, upstream_url: str, bytes_per_second: float) -> None:
        self.upstream_url = upstream_url
        self.rate = bytes_per_second
        self._free_at = 0.0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _pace(self, n: int) -> None:
        """Reserve the link for ``n`` bytes after what is already on it; wait for them."""
        loop = asyncio.get_running_loop()
        self._free_at = max(self._free_at, loop.time()) + n / self.rate
        await asyncio.sleep(self._free_at - loop.time())

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        skip = {"host", "content-length", "transfer-encoding", "connection"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with self._http.request(
            request.method,
            self.upstream_url + request.path_qs,
            headers=headers,
            data=await request.read() if request.can_read_body else None,
            allow_redirects=False,
        ) as resp:
            out = {k: v for k, v in resp.headers.items() if k.lower() not in skip}
            response = web.StreamResponse(status=resp.status, headers=out)
            if resp.content_length is not None:
                response.content_length = resp.content_length
            await response.prepare(request)
            async for chunk in resp.content.iter_chunked(64 * 1024):
                await self._pace(len(chunk))
                await response.write(chunk)
            await response.write_eof()
            return response


async def push_layer(http: aiohttp.ClientSession, upstream: Server, tag: str, size: int) -> str:
    """Push a one-layer image of ``size`` random bytes; return the layer's digest."""
    layer = os.urandom(size)
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    for blob in (config, layer):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        async with http.post(f"{upstream.url}/v2/{REPOSITORY}/blobs/uploads/") as resp:
            location = resp.headers["Location"]
        async with http.put(f"{upstream.url}{location}?digest={digest}", data=blob) as resp:
            assert resp.status == 201, await resp.text()

    def descriptor(data: bytes, media_type: str) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar")],
        }
    ).encode()
    async with http.put(
        f"{upstream.url}/v2/{REPOSITORY}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    ) as resp:
        assert resp.status == 201, await resp.text()
    return "sha256:" + hashlib.sha256(layer).hexdigest()


async def upstream_blob_bytes(http: aiohttp.ClientSession, upstream: Server) -> float:
    async with http.get(f"{upstream.url}/metrics") as resp:
        text = await resp.text()
    return sum(float(m.group(1)) for m in _SENT_BLOB_BYTES.finditer(text))


async def pull(url: str, digest: str, concurrency: int) -> float:
    """``concurrency`` clients GET the blob at once; seconds until the last one is done."""

    async def one() -> None:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200, await resp.text()
            hasher = hashlib.sha256()
            async for chunk in resp.content.iter_chunked(MiB):
                hasher.update(chunk)
            assert "sha256:" + hasher.hexdigest() == digest, "client got wrong bytes"

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return time.perf_counter() - started


async def pull_curl(url: str, digest: str, size: int, concurrency: int) -> float:
    """``concurrency`` curl processes GET the blob at once, no hashing; seconds until the
    last one is done. Each must get a 200 with ``size`` bytes; then one untimed pull
    re-hashes the bytes."""
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("curl is not installed")

    async def one() -> None:
        proc = await asyncio.create_subprocess_exec(
            curl,
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            url,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert out.decode() == f"200 {size}", f"curl got {out.decode()!r}"

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    await pull(url, digest, 1)
    return seconds


async def timed_pull(client: str, url: str, digest: str, size: int, concurrency: int) -> float:
    if client == "curl":
        return await pull_curl(url, digest, size, concurrency)
    return await pull(url, digest, concurrency)


@dataclass
class Row:
    target: str
    size: int
    concurrency: int
    cold_seconds: float
    warm_seconds: float
    upstream_bytes: float


async def run(
    sizes: list[int],
    concurrencies: list[int],
    client: str = "python",
    upstream_mbit: float | None = None,
) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="registryd-bench-mirror-") as tmp:
        base = Path(tmp)
        upstream = start_registryd(base / "upstream", None)
        servers = [upstream]
        link = Link(upstream.url, upstream_mbit * 1e6 / 8) if upstream_mbit else None
        try:
            upstream_url = upstream.url
            if link is not None:
                await link.start()
                upstream_url = link.url
            # Off the loop: the link in this loop must answer while they start.
            ours = await asyncio.to_thread(start_registryd_mirror, base / "mirror", upstream_url)
            servers.append(ours)
            theirs = await asyncio.to_thread(
                start_distribution_proxy, base / "distribution", upstream_url
            )
            servers.append(theirs)
            targets = {
                "registryd": f"{ours.url}/v2/{NAMESPACE}/{REPOSITORY}/blobs/",
                "distribution": f"{theirs.url}/v2/{REPOSITORY}/blobs/",
                DIRECT: f"{upstream.url}/v2/{REPOSITORY}/blobs/",
            }
            async with aiohttp.ClientSession() as http:
                for size in sizes:
                    for concurrency in concurrencies:
                        tag = f"s{size // MiB}-c{concurrency}"
                        digest = await push_layer(http, upstream, tag, size)
                        for target, prefix in targets.items():
                            url = prefix + digest
                            before = await upstream_blob_bytes(http, upstream)
                            cold = await timed_pull(client, url, digest, size, concurrency)
                            sent = await upstream_blob_bytes(http, upstream) - before
                            warm = await timed_pull(client, url, digest, size, concurrency)
                            rows.append(Row(target, size, concurrency, cold, warm, sent))
                            print(rows[-1], flush=True)
        finally:
            if link is not None:
                await link.close()
            for server in servers:
                server.stop()
    return rows


def render(rows: list[Row]) -> str:
    lines = [
        "| layer | c | target | cold TTLB (s) | warm TTLB (s) | upstream blob bytes (cold) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        # Pulling the upstream directly, its bytes are the clients' own: nothing to compare.
        sent = "-" if r.target == DIRECT else f"{r.upstream_bytes / r.size:.1f}x"
        lines.append(
            f"| {r.size // MiB} MiB | {r.concurrency} | {r.target} | {r.cold_seconds:.3f} "
            f"| {r.warm_seconds:.3f} | {sent} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mirror", description=__doc__)
    parser.add_argument("--sizes-mib", default="16,128", help="layer sizes, comma-separated")
    parser.add_argument("--concurrency", default="1,16", help="clients, comma-separated")
    parser.add_argument(
        "--client",
        choices=("python", "curl"),
        default="python",
        help="python: re-hash in the timed pull; curl: one process per client, no hashing",
    )
    parser.add_argument(
        "--upstream-mbit",
        type=float,
        default=None,
        help="pace the mirrors' link to the upstream to this many Mbit/s (default: loopback)",
    )
    args = parser.parse_args()
    sizes = [int(s) * MiB for s in args.sizes_mib.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rows = asyncio.run(run(sizes, concurrencies, args.client, args.upstream_mbit))
    print(render(rows))


if __name__ == "__main__":
    main()
