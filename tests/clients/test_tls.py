"""Native TLS: real clients trust a test CA (no --tls-verify=false), certificates rotate live.

The CA and certificates come from trustme; the server is ``registryd serve``
as a real process with ``tls_cert_file``/``tls_key_file``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
import trustme

from registryd.http.tls import new_context
from tests.clients.conftest import Skopeo
from tests.clients.test_containerd import Ctr, ctr, pushed_image
from tests.process.conftest import Launcher, ServerProcess, run_cli
from tests.support.content import sha256
from tests.support.v1client import chunked

__all__ = ["ctr"]  # the fixture

BIG = os.urandom(6 * 1024 * 1024 + 7)


def issue(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ``ca``, written as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return cert_file, key_file


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def wait_https(server: ServerProcess, context: ssl.SSLContext) -> str:
    url = server.url.replace("http://", "https://")
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert server.proc.poll() is None, server.log()
            try:
                async with http.get(url + "/v2/", ssl=context) as resp:
                    if resp.status == 200:
                        return url
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"no HTTPS in time:\n{server.log()}")


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def start_tls(
    launcher: Launcher, tmp_path: Path, database_url: str, ca: trustme.CA
) -> tuple[ServerProcess, str, Path]:
    cert_file, key_file = issue(ca, tmp_path / "certs")
    server = launcher.start(
        tmp_path / "data",
        database_url,
        env={"REGISTRYD_TLS_CERT_FILE": str(cert_file), "REGISTRYD_TLS_KEY_FILE": str(key_file)},
        wait=False,
    )
    url = await wait_https(server, client_context(ca))
    return server, url, cert_file.parent


async def test_blobs_stream_over_tls_1_2_and_1_3(
    launcher: Launcher, tmp_path: Path, database_url: str, ca: trustme.CA
) -> None:
    _, url, _ = await start_tls(launcher, tmp_path, database_url, ca)
    context = client_context(ca)
    async with aiohttp.ClientSession(base_url=url) as http:
        resp = await http.post(
            f"/v2/alice/app/blobs/uploads/?digest={sha256(BIG)}", data=chunked(BIG), ssl=context
        )
        assert resp.status == 201, await resp.text()
        # sendfile cannot cross user-space TLS: the body is streamed, byte for byte.
        async with http.get(f"/v2/alice/app/blobs/{sha256(BIG)}", ssl=context) as resp:
            assert resp.status == 200
            assert hashlib.sha256(await resp.read()).hexdigest() == sha256(BIG)[7:]
        async with http.get(
            f"/v2/alice/app/blobs/{sha256(BIG)}", headers={"Range": "bytes=10-19"}, ssl=context
        ) as resp:
            assert resp.status == 206
            assert await resp.read() == BIG[10:20]

    # TLS 1.2 and 1.3 are offered; the server's floor is 1.2 (older clients cannot
    # even be built by this Python's ssl without deprecation errors).
    assert new_context(*issue(ca, tmp_path / "again")).minimum_version == ssl.TLSVersion.TLSv1_2
    tls13 = client_context(ca)
    tls13.minimum_version = ssl.TLSVersion.TLSv1_3
    async with aiohttp.ClientSession() as http, http.get(url + "/v2/", ssl=tls13) as resp:
        assert resp.status == 200
    tls12 = client_context(ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    async with aiohttp.ClientSession() as http, http.get(url + "/v2/", ssl=tls12) as resp:
        assert resp.status == 200


async def test_certificate_rotates_without_a_restart(
    launcher: Launcher, tmp_path: Path, database_url: str, ca: trustme.CA
) -> None:
    server, url, cert_dir = await start_tls(launcher, tmp_path, database_url, ca)
    successor = trustme.CA()
    # Written as a Secret update lands: new files renamed into place.
    staged_cert, staged_key = issue(successor, tmp_path / "staged")
    staged_key.rename(cert_dir / "tls.key")
    staged_cert.rename(cert_dir / "tls.crt")
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url + "/v2/", ssl=client_context(successor)) as resp:
                    assert resp.status == 200
                    break
            except aiohttp.ClientConnectorCertificateError:
                assert time.monotonic() < deadline, server.log()
                await asyncio.sleep(0.5)
        # The old CA is no longer presented.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.get(url + "/v2/", ssl=client_context(ca))
    assert "TLS certificate reloaded" in server.log()


async def test_a_bad_certificate_pair_stops_start_up(tmp_path: Path, ca: trustme.CA) -> None:
    cert_file, _ = issue(ca, tmp_path / "certs")
    other_key = tmp_path / "other.key"
    ca.issue_cert("other.example").private_key_pem.write_to_path(str(other_key))
    result = await asyncio.to_thread(
        run_cli,
        "serve",
        env={
            "REGISTRYD_TLS_CERT_FILE": str(cert_file),
            "REGISTRYD_TLS_KEY_FILE": str(other_key),
            "REGISTRYD_DATA_DIR": str(tmp_path / "data"),
        },
    )
    assert result.returncode == 2
    assert "TLS certificate or key" in result.stderr
    result = await asyncio.to_thread(
        run_cli, "config", "check", env={"REGISTRYD_TLS_CERT_FILE": str(cert_file)}
    )
    assert result.returncode == 2
    assert "TLS_KEY_FILE" in result.stderr


async def test_skopeo_and_containerd_trust_the_ca(
    launcher: Launcher,
    tmp_path: Path,
    database_url: str,
    ca: trustme.CA,
    skopeo: Skopeo,
    ctr: Ctr,
) -> None:
    server, _, _ = await start_tls(launcher, tmp_path, database_url, ca)
    host = server.url.removeprefix("http://")
    trust = tmp_path / "trust"
    trust.mkdir()
    ca.cert_pem.write_to_path(str(trust / "ca.crt"))
    layout, image = pushed_image(tmp_path)
    await skopeo(
        "copy", "--dest-cert-dir", str(trust), f"oci:{layout}:v1", f"docker://{host}/alice/app:v1"
    )
    # containerd talks plain HTTP to 127.0.0.1 unless a hosts.toml says otherwise,
    # which is how a node is pointed at a registry with a private CA anyway.
    hosts = tmp_path / "hosts" / host
    hosts.mkdir(parents=True)
    (hosts / "hosts.toml").write_text(
        f'server = "https://{host}"\n'
        f'[host."https://{host}"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n'
        f'  ca = "{trust / "ca.crt"}"\n'
    )
    await ctr(
        "images",
        "pull",
        "--hosts-dir",
        str(tmp_path / "hosts"),
        "--snapshotter",
        "native",
        f"{host}/alice/app:v1",
    )
    assert {b.digest for b in image.blobs} <= await ctr.content_digests()
