"""The server's own collector: periodic, one process at a time, counted and logged."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import Settings
from registryd.db import gc_queries
from registryd.domain.services import Services
from registryd.gc.periodic import collect_if_free
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
