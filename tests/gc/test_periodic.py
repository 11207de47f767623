"""The server's own collector: periodic, one process at a time, counted and logged."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import asyncpg
import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from registryd.db import gc_queries
from registryd.domain.services import Services
from registryd.gc.collector import BATCH, Collector
from registryd.gc.periodic import collect_if_free
from registryd.storage import paths
from tests.gc.conftest import store_garbage
from tests.support.v2client import V2Client


async def test_only_one_process_collects_at_a_time(svc: Services) -> None:
    async with svc.pool.acquire() as other:
        assert await gc_queries.try_collector_lock(other)  # another replica is collecting
        assert await collect_if_free(svc) is None
        await gc_queries.collector_unlock(other)
    report = await collect_if_free(svc)
    assert report is not None
    assert report.finished


async def test_the_server_collects_periodically_with_metrics_and_a_log_line(
    settings: Settings, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(dataclasses.replace(settings, gc_interval_seconds=1))
    client = await aiohttp_client(app)
    v2 = V2Client(client)
    digest = await v2.push_blob("alice/app", b"pushed and forgotten")  # garbage: grace is 0 here
    with caplog.at_level(logging.INFO, logger="registryd.gc"):
        for _ in range(50):
            await asyncio.sleep(0.1)
            async with client.get("/metrics") as resp:
                text = await resp.text()
            if "registryd_gc_blobs_deleted_total 1.0" in text:
                break
    assert 'registryd_gc_runs_total{outcome="finished"}' in text
    assert "registryd_gc_bytes_deleted_total 20.0" in text
    assert "registryd_gc_duration_seconds_count" in text
    lines = [r for r in caplog.records if r.name == "registryd.gc"]
    assert any("1 blob(s)" in r.getMessage() for r in lines)
    status, _, _ = await v2.call("GET", f"/v2/alice/app/blobs/{digest}")
    assert status == 404


async def test_a_run_stops_at_gc_max_seconds_and_the_next_one_resumes(
    settings: Settings, svc: Services, db: asyncpg.Connection
) -> None:
    count = BATCH + 200
    await store_garbage(settings, db, count)

    async def slow_first_batch(point: str) -> None:
        if point == "blob rows committed":
            await asyncio.sleep(1.2)  # the first batch outlasts the run's budget

    bounded = dataclasses.replace(svc, settings=dataclasses.replace(settings, gc_max_seconds=1))
    first = await Collector(bounded, slow_first_batch).run()
    assert not first.finished
    assert len(first.blobs) == BATCH  # one batch of rows; its files were not reached
    assert first.files_removed == 0
    assert await db.fetchval("SELECT count(*) FROM blob_deletions") == BATCH
    assert 1.0 <= first.seconds < 5

    second = await Collector(svc).run()
    assert second.finished
    assert len(second.blobs) == count - BATCH
    assert second.files_removed == count  # the first run's files too
    assert await db.fetchval("SELECT count(*) FROM blobs") == 0
    assert await db.fetchval("SELECT count(*) FROM blob_deletions") == 0
    assert list(paths.blobs_dir(settings.storage_root).rglob("*/*/*")) == []


async def test_gc_max_deletes_per_second_paces_a_run_in_small_batches(
    settings: Settings, svc: Services, db: asyncpg.Connection
) -> None:
    await store_garbage(settings, db, 120)
    paced = dataclasses.replace(
        svc, settings=dataclasses.replace(settings, gc_max_deletes_per_second=200)
    )
    collector = Collector(paced)
    assert collector.batch == 20  # about ten batches a second
    report = await collector.run()
    assert report.finished
    assert len(report.blobs) == report.files_removed == 120
    assert report.seconds >= 120 / 200 - 0.05  # no faster than the limit
    assert await db.fetchval("SELECT count(*) FROM blobs") == 0
    assert Collector(svc).batch == BATCH  # no limit: full batches
