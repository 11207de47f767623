"""Operating a real ``registryd serve`` process: probes, metrics, logs, drain on SIGTERM, config."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from registryd.db.embedded import DATABASE_NAME, EmbeddedPostgres, ensure_database
from registryd.db.embedded import database_url as url_of_database
from registryd.db.migrate import apply_migrations
from registryd.storage import paths
from tests.ops.test_endpoints import value
from tests.process.conftest import Launcher, ServerProcess, run_cli
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client


async def _get(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def _wait_for_status(url: str, status: int, within: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + within
    seen: tuple[int, dict[str, object]] | None = None
    while time.monotonic() < deadline:
        seen = await _get(url)
        if seen[0] == status:
            return seen[1]
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered {status} in {within}s; last {seen}")


def _drained_line(server: ServerProcess) -> dict[str, object]:
    return next(line for line in _log_lines(server) if str(line["message"]).startswith("drained"))


def _log_lines(server: ServerProcess) -> list[dict[str, object]]:
    """The server's JSON log lines (stderr is not a terminal, so ``auto`` means JSON)."""
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, so stopping it hurts no other test."""
    embedded = EmbeddedPostgres(tmp_path / "pg")
    try:
        yield embedded
    finally:
        embedded.stop()


async def _migrated_database(server_url: str) -> str:
    await ensure_database(server_url, DATABASE_NAME)
    url = url_of_database(server_url, DATABASE_NAME)
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return url


async def test_livez_and_readyz_follow_postgresql(
    launcher: Launcher, tmp_path: Path, own_postgres: EmbeddedPostgres
) -> None:
    server_url = await asyncio.to_thread(own_postgres.start)
    url = await _migrated_database(server_url)
    server = launcher.start(
        tmp_path / "data", url, env={"REGISTRYD_READINESS_TIMEOUT_SECONDS": "1"}
    )
    assert await _get(server.url + "/livez") == (200, {"status": "ok"})
    await _wait_for_status(server.url + "/readyz", 200)

    await asyncio.to_thread(own_postgres.stop)
    body = await _wait_for_status(server.url + "/readyz", 503)
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"] != "ok"
    assert checks["storage"] == "ok"
    assert (await _get(server.url + "/livez"))[0] == 200  # alive, just not ready

    assert await asyncio.to_thread(own_postgres.start) == server_url
    await _wait_for_status(server.url + "/readyz", 200)
    assert await asyncio.to_thread(server.stop) == 0
    messages = [line["message"] for line in _log_lines(server)]
    assert "not ready" in messages
    assert "ready" in messages


async def test_metrics_and_access_log_of_a_real_push_and_pull(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    server = launcher.start(tmp_path / "data", database_url)
    layer = random_bytes(2 * 1024 * 1024 + 17, 7)
    image = make_image("metrics-process", layer)
    async with aiohttp.ClientSession(base_url=server.url) as http:
        v1 = V1Client(http)
        await v1.push("alice/app", "latest", [image])
        pulled = await v1.pull("alice/app", "latest")
        assert pulled[0][2] == layer
        async with http.get("/v1/_ping", headers={"X-Request-Id": "from-the-client"}) as resp:
            assert resp.headers["X-Request-Id"] == "from-the-client"
        async with http.get("/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    put_layer = {"method": "PUT", "route": "/v1/images/{image_id}/layer"}
    get_layer = {"method": "GET", "route": "/v1/images/{image_id}/layer"}
    assert value(text, "registryd_http_requests_total", status="200", **put_layer) == 1
    assert value(text, "registryd_http_requests_total", status="200", **get_layer) == 1
    assert value(text, "registryd_http_received_bytes_total", **put_layer) == len(layer)
    assert value(text, "registryd_http_sent_bytes_total", **get_layer) == len(layer)
    assert value(text, "registryd_http_request_duration_seconds_count", **get_layer) == 1
    assert value(text, "registryd_uploads_in_progress") == 0
    assert value(text, "registryd_build_info", version="0.1.0") == 1
    assert image.image_id not in text
    assert await asyncio.to_thread(server.stop) == 0

    access = [line for line in _log_lines(server) if line["logger"] == "registryd.access"]
    ping = next(line for line in access if line["request_id"] == "from-the-client")
    assert ping["route"] == "/v1/_ping"
    assert ping["status"] == 200
    layer_put = next(line for line in access if str(line["path"]).endswith("/layer"))
    assert layer_put["bytes_received"] == len(layer)
    assert layer_put["route"] == "/v1/images/{image_id}/layer"
    tag_put = next(line for line in access if "/tags/" in str(line["path"]))
    assert tag_put["repository"] == "alice/app"
    for line in access:
        assert {"duration_ms", "bytes_sent", "user", "remote"} <= line.keys()


def test_multiprocess_metrics_add_up(tmp_path: Path) -> None:
    """Two processes count into one directory; a scrape of either sees the sum."""
    worker = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from registryd.ops.metrics import Metrics
        metrics = Metrics(Path(sys.argv[1]))
        metrics.route("GET", "/v1/_ping").observe(200, 0.01, 0, 4)
        metrics.uploads_in_progress.inc()
        if sys.argv[2] == "render":
            sys.stdout.write(metrics.render().decode())
        """
    )

    def run(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", worker, str(tmp_path), mode],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    run("count")
    text = run("render")
    ping = {"method": "GET", "route": "/v1/_ping"}
    assert value(text, "registryd_http_requests_total", status="200", **ping) == 2
    assert value(text, "registryd_http_sent_bytes_total", **ping) == 8


async def _trickle(
    layer: bytes, started: asyncio.Event, pause_seconds: float
) -> AsyncIterator[bytes]:
    """The layer in 256 KiB pieces, slowly after the first MiB, so a signal lands mid-body."""
    piece = 256 * 1024
    for offset in range(0, len(layer), piece):
        yield layer[offset : offset + piece]
        if offset >= 1024 * 1024:
            started.set()
            await asyncio.sleep(pause_seconds)


async def _start_upload(
    http: aiohttp.ClientSession, layer: bytes, seed: str, pause_seconds: float
) -> tuple[str, asyncio.Task[int]]:
    image = make_image(seed, layer)
    async with http.put(f"/v1/images/{image.image_id}/json", data=image.json) as resp:
        assert resp.status == 200
    started = asyncio.Event()

    async def upload() -> int:
        body = _trickle(layer, started, pause_seconds)
        async with http.put(f"/v1/images/{image.image_id}/layer", data=body) as resp:
            return resp.status

    task = asyncio.create_task(upload())
    await started.wait()
    return image.image_id, task


async def _layer_of(database_url: str, image_id: str) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        digest: str | None = await conn.fetchval(
            "SELECT layer_digest FROM v1_images WHERE image_id = $1", image_id
        )
        return digest
    finally:
        await conn.close()


def _stored_files(storage: Path) -> tuple[list[Path], list[Path]]:
    uploads = list(paths.uploads_dir(storage).iterdir())
    blobs = [p for p in paths.blobs_dir(storage).rglob("*") if p.is_file()]
    return uploads, blobs


async def test_sigterm_lets_an_upload_finish_within_the_drain_timeout(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    server = launcher.start(
        data_dir,
        database_url,
        env={"REGISTRYD_DRAIN_DELAY_SECONDS": "1", "REGISTRYD_DRAIN_TIMEOUT_SECONDS": "30"},
    )
    layer = random_bytes(4 * 1024 * 1024, 8)  # about 1.5 s of trickling after the signal
    async with aiohttp.ClientSession(base_url=server.url) as http:
        image_id, upload = await _start_upload(http, layer, "drain-finish", 0.1)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        # During the drain delay new connections still get in, and hear "draining".
        assert await _wait_for_status(server.url + "/readyz", 503, within=1) == {
            "status": "draining"
        }
        assert await upload == 200
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    exited = time.monotonic() - signalled
    uploads, blobs = _stored_files(data_dir / "storage")
    assert uploads == []
    digest = hashlib.sha256(layer).hexdigest()
    assert [b.name for b in blobs] == [digest]
    assert await _layer_of(database_url, image_id) == f"sha256:{digest}"
    drained = next(
        line for line in _log_lines(server) if str(line["message"]).startswith("drained")
    )
    assert drained["cancelled"] == 0
    print(f"\nupload finished during the drain; exit {exited:.2f}s after SIGTERM ({drained})")


async def test_sigterm_cancels_an_upload_past_the_drain_timeout_cleanly(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    drain_timeout = 1.0
    server = launcher.start(
        data_dir, database_url, env={"REGISTRYD_DRAIN_TIMEOUT_SECONDS": str(drain_timeout)}
    )
    layer = random_bytes(16 * 1024 * 1024, 9)  # about 12 s of trickling: far past the timeout
    async with aiohttp.ClientSession(base_url=server.url) as http:
        image_id, upload = await _start_upload(http, layer, "drain-cancel", 0.2)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.proc.wait, 30)
        exited = time.monotonic() - signalled
        with contextlib.suppress(aiohttp.ClientError):
            await upload
    assert code == 0
    assert drain_timeout <= exited < drain_timeout + 5
    assert _stored_files(data_dir / "storage") == ([], [])  # nothing partial, nothing committed
    assert await _layer_of(database_url, image_id) is None  # the image can be pushed again
    drained = next(
        line for line in _log_lines(server) if str(line["message"]).startswith("drained")
    )
    assert drained["cancelled"] == 1
    access = [line for line in _log_lines(server) if line["logger"] == "registryd.access"]
    cancelled = next(line for line in access if line.get("cancelled_by_drain"))
    assert cancelled["status"] == 499
    print(f"\nupload cancelled by the drain; exit {exited:.2f}s after SIGTERM ({drained})")


async def test_config_check_prints_the_effective_configuration_masked(tmp_path: Path) -> None:
    config = tmp_path / "registryd.toml"
    config.write_text('port = 6001\ntoken_secret = "' + "s" * 40 + '"\n')
    result = await asyncio.to_thread(
        run_cli,
        "config",
        "check",
        "--config",
        str(config),
        "--max-layer-bytes",
        "1GiB",
        env={
            "REGISTRYD_DATABASE_URL": "postgresql://reg:pg-secret@db.internal/reg",
            "REGISTRYD_ADMIN_USER": "root",
            "REGISTRYD_ADMIN_PASSWORD": "admin-secret",
        },
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for secret in ("pg-secret", "s" * 40, "admin-secret"):
        assert secret not in out
    assert f"port = 6001  # file {config}" in out
    assert "max_layer_bytes = 1073741824  # flag --max-layer-bytes" in out
    assert 'database_url = "postgresql://reg:***@db.internal/reg"' in out
    assert 'token_secret = "***"' in out


async def test_config_errors_stop_start_up_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "registryd.toml"
    config.write_text("drain_timeout_seconds = -5\n")
    cases = [
        (("serve", "--config", str(config)), {}, f"{config}: drain_timeout_seconds"),
        (("serve",), {"REGISTRYD_CONFIG": str(tmp_path / "missing.toml")}, "missing.toml"),
        (("serve",), {"REGISTRYD_LOG_FORMAT": "xml"}, "REGISTRYD_LOG_FORMAT"),
        (("config", "check", "--drain-delay-seconds", "x"), {}, "--drain-delay-seconds"),
    ]
    for args, env, named in cases:
        result = await asyncio.to_thread(run_cli, *args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert named in result.stderr
        assert "configuration error" in result.stderr


async def test_a_second_sigterm_cuts_the_drain_short(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    server = launcher.start(data_dir, database_url, env={"REGISTRYD_DRAIN_TIMEOUT_SECONDS": "60"})
    layer = random_bytes(16 * 1024 * 1024, 10)
    async with aiohttp.ClientSession(base_url=server.url) as http:
        _, upload = await _start_upload(http, layer, "drain-hurry", 0.2)
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.proc.wait, 30)
        exited = time.monotonic() - signalled
        with contextlib.suppress(aiohttp.ClientError):
            await upload
    assert code == 0
    assert exited < 5  # not the 60 s drain timeout
    assert _stored_files(data_dir / "storage") == ([], [])
    assert _drained_line(server)["cancelled"] == 1
