"""``registryd serve`` and ``migrate`` as real processes: embedded default, crashes, bad config."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from registryd.db.migrate import load_migrations
from registryd.storage import paths
from tests.process.conftest import Launcher, run_cli
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client


async def test_embedded_default_serves_persists_and_stops(
    launcher: Launcher, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    server = launcher.start(data_dir, None)
    image = make_image("embedded", random_bytes(10_000, 4))
    async with aiohttp.ClientSession(base_url=server.url) as http:
        await V1Client(http).push("alice/app", "latest", [image])
    assert await asyncio.to_thread(server.stop) == 0
    assert "embedded PostgreSQL stopped" in server.log()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    # Start again on the same data directory: everything is still there.
    server = launcher.start(data_dir, None)
    async with aiohttp.ClientSession(base_url=server.url) as http:
        pulled = await V1Client(http).pull("alice/app", "latest")
    assert pulled == [(image.image_id, image.json, image.layer)]
    assert await asyncio.to_thread(server.stop) == 0


async def test_kill_mid_upload_leaves_nothing_partial_and_restart_cleans(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    server = launcher.start(data_dir, database_url)
    layer = random_bytes(8 * 1024 * 1024, 5)
    image = make_image("killed", layer)
    uploads = paths.uploads_dir(data_dir / "storage")
    streaming = asyncio.Event()

    async def slow_body() -> object:
        for start in range(0, len(layer), 1024 * 1024):
            yield layer[start : start + 1024 * 1024]
            if start >= 2 * 1024 * 1024:
                streaming.set()
                await asyncio.sleep(0.2)

    async with aiohttp.ClientSession(base_url=server.url) as http:
        await http.put(f"/v1/images/{image.image_id}/json", data=image.json)
        upload = asyncio.create_task(
            http.put(f"/v1/images/{image.image_id}/layer", data=slow_body())
        )
        await streaming.wait()
        await asyncio.sleep(0.3)
        server.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(server.proc.wait, 10)
        with contextlib.suppress(aiohttp.ClientError):
            await upload
    assert list(uploads.iterdir()), "the killed upload left its temp file"
    assert not list(
        paths.blobs_dir(data_dir / "storage").rglob("*/*/*")
    )  # nothing content-addressed

    server = launcher.start(data_dir, database_url, env={"REGISTRYD_STALE_UPLOAD_SECONDS": "0"})
    assert list(uploads.iterdir()) == []  # cleaned at start-up
    async with aiohttp.ClientSession(base_url=server.url) as http:
        resp = await http.get(f"/v1/images/{image.image_id}/json")
        assert resp.status == 400  # still uploading: a retry is possible
        assert await V1Client(http).push_image(image) == "pushed"
        resp = await http.get(f"/v1/images/{image.image_id}/layer")
        assert await resp.read() == layer
    assert await asyncio.to_thread(server.stop) == 0


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_large_layer_push_and_pull_with_flat_memory(
    launcher: Launcher, tmp_path: Path, database_url: str
) -> None:
    size = 256 * 1024 * 1024
    block = random_bytes(1024 * 1024, 6)
    layer_hash = hashlib.sha256()
    empty = make_image("large", b"")
    json_body, iid = empty.json, empty.image_id
    payload = hashlib.sha256(json_body + b"\n")

    async def body() -> object:
        for i in range(size // len(block)):
            chunk = bytes([i % 251]) + block[1:]
            layer_hash.update(chunk)
            payload.update(chunk)
            yield chunk

    server = launcher.start(tmp_path / "data", database_url)
    rss_idle = _peak_rss_kib(server.pid)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(base_url=server.url, timeout=timeout) as http:
        assert (await http.put(f"/v1/images/{iid}/json", data=json_body)).status == 200
        assert (await http.put(f"/v1/images/{iid}/layer", data=body())).status == 200
        resp = await http.put(
            f"/v1/images/{iid}/checksum",
            headers={"X-Docker-Checksum-Payload": "sha256:" + payload.hexdigest()},
        )
        assert resp.status == 200
        rss_push = _peak_rss_kib(server.pid)
        pulled = hashlib.sha256()
        received = 0
        async with http.get(f"/v1/images/{iid}/layer") as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_chunked(1024 * 1024):
                pulled.update(chunk)
                received += len(chunk)
        rss_pull = _peak_rss_kib(server.pid)
    assert received == size
    assert pulled.hexdigest() == layer_hash.hexdigest()
    print(
        f"\nserver peak RSS: idle {rss_idle / 1024:.1f} MiB, after 256 MiB push "
        f"{rss_push / 1024:.1f} MiB, after pull {rss_pull / 1024:.1f} MiB"
    )
    # Generous: the bound only catches a layer held in memory (256 MiB); bench/ measures properly.
    assert rss_pull < 200 * 1024
    assert rss_pull - rss_idle < 100 * 1024
    assert await asyncio.to_thread(server.stop) == 0


async def test_bad_settings_stop_startup_naming_the_setting(tmp_path: Path) -> None:
    for env, name in [
        ({"REGISTRYD_PORT": "http"}, "REGISTRYD_PORT"),
        ({"REGISTRYD_MAX_LAYER_BYTES": "lots"}, "REGISTRYD_MAX_LAYER_BYTES"),
        ({"REGISTRYD_DATABASE_URL": "mysql://x"}, "REGISTRYD_DATABASE_URL"),
    ]:
        result = await asyncio.to_thread(run_cli, "serve", "--data-dir", str(tmp_path), env=env)
        assert result.returncode == 2
        assert name in result.stderr
    result = await asyncio.to_thread(run_cli, "serve", "--port", "99999")
    assert result.returncode == 2
    assert "--port" in result.stderr


async def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        run_cli,
        "migrate",
        env={"REGISTRYD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr


async def test_migrate_command(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    result = await asyncio.to_thread(
        run_cli, "migrate", env={"REGISTRYD_DATABASE_URL": database_url}
    )
    assert result.returncode == 0, result.stderr
    count = len(await asyncio.to_thread(load_migrations))
    assert f"applied {count} migration(s)" in result.stdout
    result = await asyncio.to_thread(
        run_cli, "migrate", env={"REGISTRYD_DATABASE_URL": database_url}
    )
    assert "applied 0 migration(s)" in result.stdout


async def test_create_user_command(database_url: str) -> None:
    env = {"REGISTRYD_DATABASE_URL": database_url}
    result = await asyncio.to_thread(
        run_cli, "create-user", "ops_admin", "--admin", env=env, stdin="s3cret-pass\n"
    )
    assert result.returncode == 0, result.stderr
    assert "user ops_admin created" in result.stdout
    result = await asyncio.to_thread(
        run_cli, "create-user", "ops_admin", env=env, stdin="another-pass\n"
    )
    assert "user ops_admin updated" in result.stdout
    result = await asyncio.to_thread(run_cli, "create-user", "x", env=env, stdin="s3cret-pass\n")
    assert result.returncode == 1
    assert "Username must be" in result.stderr
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM users WHERE username = 'ops_admin'")
    finally:
        await conn.close()
    assert row is not None
    assert row["is_admin"] is False  # the second call did not pass --admin
    assert row["password_hash"].startswith("$argon2id$")
