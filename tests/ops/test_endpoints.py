"""/livez, /readyz, /metrics and request ids, on the in-process app."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from prometheus_client.parser import text_string_to_metric_families

from registryd.config import Settings
from registryd.keys import LIFECYCLE
from registryd.storage import paths
from tests.conftest import Client
from tests.support.images import make_image, random_bytes
from tests.support.v1client import V1Client
from tests.support.v2client import V2Client


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def test_livez(client: Client) -> None:
    resp = await client.get("/livez")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_checks_database_and_storage(client: Client) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ok",
        "checks": {"database": "ok", "storage": "ok"},
    }


async def test_readyz_is_503_when_storage_is_gone(client: Client, settings: Settings) -> None:
    shutil.rmtree(paths.blobs_dir(settings.storage_root))
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert "not a directory" in body["checks"]["storage"]


async def test_readyz_is_503_while_draining_and_livez_stays_200(client: Client) -> None:
    client.app[LIFECYCLE].draining = True
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {"status": "draining"}
    assert (await client.get("/livez")).status == 200


async def test_metrics_count_by_route_template(client: Client) -> None:
    layer = random_bytes(300_000, 1)
    image = make_image("metrics", layer)
    v1 = V1Client(client)
    await v1.push("alice/app", "latest", [image])
    await v1.pull("alice/app", "latest")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    # Ids and digests never become labels: one series per route template.
    assert image.image_id not in text
    layer_route = {"route": "/v1/images/{image_id}/layer"}
    put_layer = {"method": "PUT", **layer_route}
    get_layer = {"method": "GET", **layer_route}
    assert value(text, "registryd_http_requests_total", status="200", **put_layer) == 1
    assert value(text, "registryd_http_requests_total", status="200", **get_layer) == 1
    assert value(text, "registryd_http_received_bytes_total", **put_layer) == len(layer)
    assert value(text, "registryd_http_sent_bytes_total", **get_layer) == len(layer)
    assert value(text, "registryd_http_request_duration_seconds_count", **put_layer) == 1
    assert value(text, "registryd_uploads_in_progress") == 0
    assert value(text, "registryd_storage_errors_total", operation="write") == 0
    assert value(text, "registryd_db_pool_max_connections") == 5
    assert ("registryd_db_pool_connections", frozenset({("state", "idle")})) in samples(text)
    # Unknown paths share one label, whatever they are.
    await client.get("/no/such/path/1")
    await client.get("/no/such/path/2")
    text = await (await client.get("/metrics")).text()
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(text, "registryd_http_requests_total", **unmatched) == 2


async def test_request_id_on_streamed_responses_too(client: Client) -> None:
    image = make_image("rid", random_bytes(1000, 2))
    await V1Client(client).push("alice/app", "latest", [image])
    resp = await client.get(f"/v1/images/{image.image_id}/layer", headers={"X-Request-Id": "r-1"})
    assert resp.status == 200
    assert resp.headers["X-Request-Id"] == "r-1"


async def test_one_access_log_line_per_request(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="registryd.access")
    await client.get("/v1/repositories/alice/app/tags", headers={"X-Request-Id": "abc"})
    await client.get("/livez")
    records = [r for r in caplog.records if r.name == "registryd.access"]
    assert len(records) == 2
    tags, livez = records
    fields = tags.__dict__["fields"]
    assert tags.levelno == logging.INFO
    assert fields["request_id"] == "abc"
    assert fields["route"] == "/v1/repositories/{namespace}/{repository}/tags"
    assert fields["repository"] == "alice/app"
    assert fields["status"] == 404
    assert fields["bytes_sent"] > 0
    assert fields["duration_ms"] >= 0
    assert json.loads(json.dumps(fields, default=str))  # serialisable as it stands
    assert livez.levelno == logging.DEBUG  # probes stay out of the info log


async def test_v2_uploads_are_counted_by_route_template(client: Client) -> None:
    layer = random_bytes(200_000, 3)
    await V2Client(client).push_image("alice/app", "v1", [layer])
    text = await (await client.get("/metrics")).text()
    patch = {"method": "PATCH", "route": "/v2/{name}/blobs/uploads/{upload_id}"}
    assert value(text, "registryd_http_requests_total", status="202", **patch) == 2
    assert value(text, "registryd_http_received_bytes_total", **patch) > len(layer)
    assert value(text, "registryd_uploads_in_progress") == 0
    assert "alice/app" not in text
