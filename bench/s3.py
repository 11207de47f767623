"""The ``s3`` section: registryd on its s3 backend next to distribution 2.8 on its own ``s3``
driver, both against one moto S3 server (``bench/moto.py``) and one bucket.

Points: blob pulls proxied (``s3_redirect`` off / distribution's ``redirect.disable``;
wrk) and redirected (each GET answers 307 to a presigned URL and the Python
client follows it to moto: wrk does not follow redirects, so these rows time the
whole client flow, the bucket's bytes included), and unique v2 pushes (POST +
PUT with the whole body). Every point also gives moto's own CPU: moto is a
Python server (one GIL), so it bounds most of these figures, and the table says
how much of the server-side CPU was moto's.

A registryd without the s3 backend (no ``storage`` setting; it would ignore the
variables with a warning and keep blobs on its disk) gets no rows: the section
says so and still gives distribution's. So does any target whose seeded blobs
did not reach the bucket.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bench import moto, report, v2, workloads, wrk
from bench.loadgen import Connection, HttpError, Operation, run_load
from bench.report import Point, Sample
from bench.targets import Server, _pin, _spawn, find_binary, free_port, start_registryd
from bench.workloads import UniqueLayers
from bench.wrk import WrkLoad

if TYPE_CHECKING:
    from bench.__main__ import Bench

PULL_PROXIED = "s3 pull, proxied"
PULL_REDIRECT = "s3 pull, redirect (Python client follows the 307 to moto)"
PUSH = "s3 push v2"
SECTIONS = (PULL_PROXIED, PULL_REDIRECT, PUSH)
NO_BACKEND = "registryd has no s3 backend in this build"
# Where each target keeps its objects in the shared bucket.
REGISTRYD_PREFIX = "registryd"
DISTRIBUTION_ROOT = "/distribution"
# registryd's s3_part_bytes default, and distribution's chunksize set to match it.
PART_BYTES = 16 * 1024 * 1024
# Pull concurrencies above this would hold GiBs of 128 MiB bodies in flight in moto.
MAX_PULL_CONCURRENCY = 16
# About what moto serves (bytes/s) on one core: sizes the wrk runs below.
STORE_BYTES_PER_SECOND = 200e6


@dataclass
class S3Sample(Sample):
    """A sample with the S3 server's share: its CPU seconds per second of the run and its
    peak RSS during it."""

    store_cpu: float = 0.0
    store_peak_rss_bytes: int = 0

    @property
    def store_share(self) -> float | None:
        """moto's part of the server-side CPU (the registry's and moto's together)."""
        total = self.server_cpu + self.store_cpu
        return self.store_cpu / total if total else None


# Configuration ----------------------------------------------------------------------


def layout(cpu_count: int) -> tuple[str | None, str | None, str | None]:
    """CPUs of (the registry under test, moto, the load generator): one each when there are
    three, else all free (three busy processes on two CPUs cannot be kept apart)."""
    if cpu_count >= 3:
        return "0", "1", "2"
    return None, None, None


def client_env(base: Mapping[str, str], workdir: Path) -> dict[str, str]:
    """``base`` with the AWS SDK pointed at the bench's dummy credentials only: no variable,
    profile, CA bundle or instance metadata of this machine reaches a server."""
    env = {k: v for k, v in base.items() if not k.startswith("AWS_")}
    absent = str(workdir / "no-aws-config")
    env.update(
        AWS_ACCESS_KEY_ID=moto.ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=moto.SECRET_KEY,
        AWS_REGION=moto.REGION,
        AWS_DEFAULT_REGION=moto.REGION,
        AWS_CONFIG_FILE=absent,
        AWS_SHARED_CREDENTIALS_FILE=absent,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def registryd_settings(endpoint: str, redirect: bool, part_bytes: int) -> dict[str, str]:
    """registryd's s3 settings as REGISTRYD_* variables (README: settings)."""
    return {
        "REGISTRYD_STORAGE": "s3",
        "REGISTRYD_S3_BUCKET": moto.BUCKET,
        "REGISTRYD_S3_PREFIX": REGISTRYD_PREFIX,
        "REGISTRYD_S3_REGION": moto.REGION,
        "REGISTRYD_S3_ENDPOINT_URL": endpoint,
        "REGISTRYD_S3_PATH_STYLE": "true",
        "REGISTRYD_S3_REDIRECT": "true" if redirect else "false",
        "REGISTRYD_S3_PART_BYTES": str(part_bytes),
    }


def distribution_config(port: int, endpoint: str, redirect: bool, part_bytes: int) -> str:
    """distribution 2.8's config on its ``s3`` driver (path style: 2.8 forces it whenever
    ``regionendpoint`` is set, and ``forcepathstyle`` says so to later versions)."""
    return f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  s3:
    accesskey: {moto.ACCESS_KEY}
    secretkey: {moto.SECRET_KEY}
    region: {moto.REGION}
    regionendpoint: {endpoint}
    forcepathstyle: true
    bucket: {moto.BUCKET}
    secure: false
    v4auth: true
    chunksize: {part_bytes}
    rootdirectory: {DISTRIBUTION_ROOT}
  redirect:
    disable: {"false" if redirect else "true"}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def wrk_seconds(seconds: float, concurrency: int, size: int) -> float:
    """How long a wrk pull point runs: ``seconds``, or long enough for each connection to
    finish about two bodies at moto's pace. wrk counts finished responses only, so 16
    connections of 128 MiB stopped after 3 s would report nothing."""
    return max(seconds, 2 * concurrency * size / STORE_BYTES_PER_SECOND)


def registryd_support() -> str | None:
    """None when this registryd knows the s3 settings, else why its rows are missing."""
    from registryd.config import setting_names

    return None if "storage" in setting_names() else NO_BACKEND


# Servers ------------------------------------------------------------------------------


def start_distribution_s3(
    workdir: Path, cpus: str | None, endpoint: str, redirect: bool, part_bytes: int
) -> Server:
    exe = find_binary("docker-registry")
    if exe is None:
        raise RuntimeError("docker-registry (distribution 2.8) is not installed")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(distribution_config(port, endpoint, redirect, part_bytes))
    env = client_env(os.environ, workdir)
    server = _spawn("distribution", workdir, port, [*_pin(cpus), exe, "serve", str(config)], env)
    try:
        server.wait_ready("/v2/")
    except BaseException:
        server.stop()
        raise
    return server


def start_registryd_s3(
    workdir: Path, cpus: str | None, endpoint: str, redirect: bool, part_bytes: int
) -> Server:
    """registryd (auth none, like distribution here) on the bucket; its PostgreSQL stays in
    ``workdir``, so a restart with the other redirect mode keeps its blobs."""
    return start_registryd(
        workdir,
        cpus,
        settings=registryd_settings(endpoint, redirect, part_bytes),
        environ=client_env(os.environ, workdir),
    )


# Loads --------------------------------------------------------------------------------


class RedirectPulls:
    """GETs of ``paths`` in turn that must answer 307; each follows the Location (a presigned
    URL) on a keep-alive connection of its own per worker, as a client pulling through a
    redirecting registry does. An operation returns the body bytes it read from the store."""

    def __init__(self, paths: list[str], headers: Mapping[str, str] | None = None) -> None:
        self.paths, self.headers = paths, dict(headers or {})
        self._store: dict[int, Connection] = {}

    def __iter__(self) -> Iterator[Operation]:
        while True:
            for path in self.paths:

                async def pull(conn: Connection, path: str = path) -> int:
                    return await self.pull(conn, path)

                yield pull

    async def pull(self, conn: Connection, path: str) -> int:
        resp = await conn.request("GET", path, headers=self.headers)
        if resp.status != 307 or "location" not in resp.headers:
            raise HttpError(f"GET {path}: HTTP {resp.status}, not a redirect")
        url = urlsplit(resp.headers["location"])
        if url.scheme != "http" or url.hostname is None:
            raise HttpError(f"GET {path}: redirect to {url.scheme}://{url.hostname}")
        store = self._store.get(id(conn))
        if store is None or (store.host, store.port) != (url.hostname, url.port or 80):
            if store is not None:
                store.close()
            store = self._store[id(conn)] = Connection(url.hostname, url.port or 80)
        target = url.path + (f"?{url.query}" if url.query else "")
        got = await store.request("GET", target)
        if got.status != 200:
            raise HttpError(f"GET {path} -> store: HTTP {got.status}")
        return got.body_bytes

    def close(self) -> None:
        for store in self._store.values():
            store.close()
        self._store.clear()


# Cleaning the bucket -------------------------------------------------------------------


def delete_objects_of_size(store: Server, bucket: str, size: int, keep: frozenset[str]) -> int:
    """Delete the objects of exactly ``size`` bytes but those in ``keep`` (the keys before the
    pushes: the pull blobs, whatever a registry names them): a push point's layers, which
    nothing reads again, or a full run would fill moto's disk. Returns the count."""
    doomed = [key for key, n in moto.list_objects(store, bucket) if n == size and key not in keep]
    moto.delete_keys(store, bucket, doomed)
    return len(doomed)


# The section --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the section measured, and why a target has no rows."""

    points: list[Point]
    missing: dict[str, str]
    endpoint_version: str


async def measure(
    bench: Bench,
    server: Server,
    store: Server,
    load: WrkLoad | RedirectPulls | Iterator[Operation],
    concurrency: int,
    client_cpus: str | None,
    seconds: float,
) -> S3Sample:
    """One run; server, moto and client CPU over exactly the run (the off-the-clock checks
    are done by the caller)."""
    server.reset_peak_rss()
    store.reset_peak_rss()
    cpu0, store0 = server.cpu_seconds(), store.cpu_seconds()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    if isinstance(load, WrkLoad):
        run = await wrk.run(
            "127.0.0.1",
            server.port,
            load,
            concurrency,
            seconds,
            bench.workdir / "wrk",
            client_cpus,
        )
        result, client_cpu = run.result, run.client_cpu_seconds
    else:
        result = await run_load(
            "127.0.0.1",
            server.port,
            iter(load),
            concurrency,
            seconds,
            bench.plan.max_operations,
        )
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime
    seconds = result.seconds or 1e-9
    return S3Sample(
        result=result,
        server_cpu=(server.cpu_seconds() - cpu0) / seconds,
        client_cpu=client_cpu / seconds,
        peak_rss_bytes=server.peak_rss_bytes(),
        store_cpu=(store.cpu_seconds() - store0) / seconds,
        store_peak_rss_bytes=store.peak_rss_bytes(),
    )


async def _check_pull(server: Server, path: str, size: int, redirect: bool) -> None:
    """One pull off the clock: the path answers (or redirects to) the whole blob."""
    conn = Connection("127.0.0.1", server.port)
    try:
        if redirect:
            follow = RedirectPulls([path])
            try:
                got = await follow.pull(conn, path)
            finally:
                follow.close()
        else:
            resp = await conn.request("GET", path)
            if resp.status != 200:
                raise RuntimeError(f"{server.name} GET {path}: HTTP {resp.status}")
            got = resp.body_bytes
    finally:
        conn.close()
    if got != size:
        raise RuntimeError(f"{server.name} GET {path}: {got} bytes, not {size}")


class Section:
    def __init__(self, bench: Bench, store: Server, cpus: tuple[str | None, ...]) -> None:
        self.bench, self.store = bench, store
        self.server_cpus, _, self.client_cpus = cpus
        self.endpoint = moto.endpoint(store)
        plan = bench.plan
        self.blobs = [workloads.make_blob(f"s3-pull-{size}", size) for size in plan.pull_sizes]
        self.pull_concurrency = tuple(c for c in plan.pull_concurrency if c <= MAX_PULL_CONCURRENCY)
        self.points: list[Point] = []
        self.missing: dict[str, str] = {}

    def start(self, name: str, redirect: bool) -> Server | None:
        """A target on the bucket, or None (and why, in ``missing``) when it cannot run."""
        if name in self.missing:
            return None
        workdir = self.bench.workdir / f"s3-{name}"
        try:
            if name == "registryd":
                return start_registryd_s3(
                    workdir, self.server_cpus, self.endpoint, redirect, PART_BYTES
                )
            return start_distribution_s3(
                workdir, self.server_cpus, self.endpoint, redirect, PART_BYTES
            )
        except RuntimeError as exc:
            self.missing[name] = f"did not start on s3: {str(exc)[-600:]}"
            print(f"s3: {name} {self.missing[name]}", file=sys.stderr)
            return None

    async def seed(self, servers: Mapping[str, Server]) -> None:
        image = v2.image(self.blobs)
        for server in servers.values():
            conn = Connection("127.0.0.1", server.port)
            try:
                await v2.seed(conn, self.blobs, image, "s3", {})
            finally:
                conn.close()

    async def point(
        self,
        servers: Mapping[str, Server],
        section: str,
        label: str,
        concurrency: int,
        loads: Mapping[str, WrkLoad | RedirectPulls | Iterator[Operation]],
        seconds: float | None = None,
    ) -> Point:
        point = Point(section, label, concurrency, "MB/s")
        for _ in range(self.bench.plan.repeat):
            for name, server in servers.items():
                load = loads[name]
                sample = await measure(
                    self.bench,
                    server,
                    self.store,
                    load,
                    concurrency,
                    self.client_cpus,
                    seconds or self.bench.plan.seconds,
                )
                if isinstance(load, RedirectPulls):
                    load.close()
                point.samples.setdefault(name, []).append(sample)
                await asyncio.sleep(0.2)
        self.points.append(point)
        print(report.progress(point), file=sys.stderr, flush=True)
        return point

    async def pulls(self, servers: Mapping[str, Server], redirect: bool) -> None:
        section = PULL_REDIRECT if redirect else PULL_PROXIED
        for blob in self.blobs:
            path = v2.blob_path(blob.digest_hex)
            for server in servers.values():
                await _check_pull(server, path, blob.size, redirect)
            for conc in self.pull_concurrency:
                loads: dict[str, WrkLoad | RedirectPulls | Iterator[Operation]] = {
                    name: RedirectPulls([path]) if redirect else WrkLoad([path], [blob.size])
                    for name in servers
                }
                seconds = wrk_seconds(self.bench.plan.seconds, conc, blob.size)
                await self.point(servers, section, report.size(blob.size), conc, loads, seconds)

    async def pushes(self, servers: Mapping[str, Server]) -> None:
        plan = self.bench.plan
        layers = UniqueLayers(plan.push_bytes, f"{self.bench.nonce}-s3")
        keep = await asyncio.to_thread(moto.keys, self.store, moto.BUCKET)
        for conc in plan.push_concurrency:
            loads: dict[str, WrkLoad | RedirectPulls | Iterator[Operation]] = {
                name: v2.pushes(layers, False, {}) for name in servers
            }
            await self.point(
                servers, PUSH, f"{report.size(plan.push_bytes)} POST+PUT", conc, loads=loads
            )
            await asyncio.to_thread(
                delete_objects_of_size, self.store, moto.BUCKET, layers.size, keep
            )

    async def check_in_bucket(self, servers: dict[str, Server]) -> None:
        """Drop a target whose seeded blobs are not in the bucket: its rows would measure
        some other storage (a registryd ignores settings it does not know, with a warning)."""
        roots = {"registryd": REGISTRYD_PREFIX, "distribution": DISTRIBUTION_ROOT.strip("/")}
        for name in list(servers):
            count = await asyncio.to_thread(moto.object_count, self.store, moto.BUCKET, roots[name])
            if count == 0:
                self.missing[name] = f"stored nothing under {roots[name]!r} in the bucket"
                print(f"s3: {name} {self.missing[name]}", file=sys.stderr)
                servers.pop(name).stop()

    async def run(self, targets: list[str]) -> None:
        names = [n for n in ("registryd", "distribution") if n in targets]
        if "registryd" in names and (reason := registryd_support()) is not None:
            self.missing["registryd"] = reason
            print(f"s3: {reason}; distribution's rows only", file=sys.stderr)
        for redirect in (False, True):
            servers: dict[str, Server] = {}
            try:
                for name in names:
                    if (server := self.start(name, redirect)) is not None:
                        servers[name] = server
                if not servers:
                    return
                if not redirect:
                    # The redirecting servers restart on the same bucket and data dirs, and
                    # would answer the seed's HEADs with 307s.
                    await self.seed(servers)
                    await self.check_in_bucket(servers)
                if not servers:
                    return
                await self.pulls(servers, redirect)
                if not redirect:
                    await self.pushes(servers)
            finally:
                for server in servers.values():
                    server.stop()


def moto_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"moto {version('moto')}"
    except PackageNotFoundError:
        return "moto (not installed)"


async def run_section(bench: Bench) -> Outcome:
    """Start moto, run every point, stop moto; the points are also added to ``bench``'s."""
    cpus = layout(os.cpu_count() or 1)
    client = cpus[2]
    os.sched_setaffinity(0, {int(client)} if client else set(range(os.cpu_count() or 1)))
    store = moto.start_moto(bench.workdir / "moto", cpus[1])
    try:
        section = Section(bench, store, cpus)
        await section.run(bench.targets)
    finally:
        store.stop()
    bench.points.extend(section.points)
    return Outcome(section.points, section.missing, moto_version())
