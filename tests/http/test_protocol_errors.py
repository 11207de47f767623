"""Each protocol is a sub-application that renders its own errors, 500s included.

No renderer is chosen by looking at the path: a v2 failure has the spec's body, a v1
failure the legacy ``{"error": ...}`` one, and an error no table maps still answers in
its protocol's shape instead of escaping the middleware.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient

from registryd import errors
from registryd.v1 import errors as v1_errors
from registryd.v1 import routes as v1_routes
from registryd.v2 import errors as v2_errors
from registryd.v2 import routes as v2_routes
from registryd.v2.url_grammar import API_VERSION, API_VERSION_HEADER
from tests.conftest import Client


def _domain_errors() -> list[type[errors.RegistryError]]:
    found: list[type[errors.RegistryError]] = []
    pending = [errors.RegistryError]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sub.__module__ == errors.__name__:
                found.append(sub)
    return sorted(found, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("table", [v1_errors.TABLE, v2_errors.TABLE], ids=["v1", "v2"])
def test_every_domain_error_has_an_entry_in_each_protocols_table(table: dict[Any, Any]) -> None:
    classes = _domain_errors()
    assert len(classes) > 40  # the walk found the module's errors
    assert [cls.__name__ for cls in classes if cls not in table] == []


class _Unmapped(errors.RegistryError):
    """A domain error added without a table entry: a programming error."""


async def _raise_unmapped(request: web.Request) -> web.Response:
    raise _Unmapped()


async def _raise_unexpected(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def _mounted(aiohttp_client: AiohttpClient, prefix: str, protocol: web.Application) -> Client:
    root = web.Application()
    root.add_subapp(prefix, protocol)
    return await aiohttp_client(root)


def _with_faults(protocol: web.Application) -> web.Application:
    # Routes of faults a client cannot cause through the public API (fakes of a bug).
    protocol.router.add_get("/fault/unmapped", _raise_unmapped)
    protocol.router.add_get("/fault/unexpected", _raise_unexpected)
    return protocol


@pytest.mark.parametrize("fault", ["unmapped", "unexpected"])
async def test_a_v2_failure_is_a_500_in_the_v2_shape(
    aiohttp_client: AiohttpClient, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await _mounted(aiohttp_client, "/v2", _with_faults(v2_routes.create_app()))
    resp = await client.get(f"/v2/fault/{fault}", headers={"X-Request-Id": "rid-v2-" + fault})
    assert resp.status == 500
    assert resp.headers[API_VERSION_HEADER] == API_VERSION
    body = json.loads(await resp.read())
    assert body == {
        "errors": [
            {
                "code": "UNKNOWN",
                "message": "unknown error",
                "detail": {"request_id": "rid-v2-" + fault, "reason": "internal error"},
            }
        ]
    }
    # The traceback is logged once, under the request id the client was given.
    failures = [r for r in caplog.records if r.exc_info and "rid-v2-" + fault in r.getMessage()]
    assert len(failures) == 1


@pytest.mark.parametrize("fault", ["unmapped", "unexpected"])
async def test_a_v1_failure_is_a_500_in_the_v1_shape(
    aiohttp_client: AiohttpClient, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await _mounted(aiohttp_client, "/v1", _with_faults(v1_routes.create_app()))
    resp = await client.get(f"/v1/fault/{fault}", headers={"X-Request-Id": "rid-v1-" + fault})
    assert resp.status == 500
    assert API_VERSION_HEADER not in resp.headers
    assert json.loads(await resp.read()) == {
        "error": f"Internal server error (request id rid-v1-{fault})"
    }
    failures = [r for r in caplog.records if r.exc_info and "rid-v1-" + fault in r.getMessage()]
    assert len(failures) == 1


async def test_each_prefix_answers_unknown_paths_in_its_own_shape(client: Client) -> None:
    v2 = await client.get("/v2/no/such/thing")
    assert v2.status == 404
    assert v2.headers[API_VERSION_HEADER] == API_VERSION
    assert json.loads(await v2.read())["errors"][0]["code"] == "NAME_UNKNOWN"
    # Not under /v2/: neither v2's body nor its version header, whatever the path looks like.
    for path in ("/v1/no/such/thing", "/v2x/_catalog", "/nothing"):
        other = await client.get(path)
        assert other.status == 404, path
        assert API_VERSION_HEADER not in other.headers, path
        assert json.loads(await other.read()) == {"error": "Not Found"}, path
    # The v2 base answers with and without its slash.
    for path in ("/v2", "/v2/"):
        base = await client.get(path)
        assert base.status == 200, path
        assert base.headers[API_VERSION_HEADER] == API_VERSION
