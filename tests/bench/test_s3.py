"""The s3 section: distribution's s3 driver config, registryd's s3 settings, the servers'
AWS environment, the table and its ratios, the moto launcher, and a smoke run of the
section (distribution against a real moto server)."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import moto, s3, s3_report, v2, workloads, wrk
from bench.loadgen import Connection, HttpError, RunResult
from bench.report import Point
from bench.targets import Server, find_binary
from registryd.config import resolve, setting_names
from tests.support.bench_run import run_bench

MiB = 1024 * 1024
needs_moto = pytest.mark.skipif(not moto.available(), reason="moto[server] is not installed")
needs_distribution = pytest.mark.skipif(
    find_binary("docker-registry") is None, reason="docker-registry is not installed"
)


def test_distribution_config_uses_its_s3_driver_on_the_endpoint() -> None:
    config: dict[str, Any] = yaml.safe_load(
        s3.distribution_config(5123, "http://127.0.0.1:9000", True, 16 * MiB)
    )
    driver = config["storage"]["s3"]
    assert driver["regionendpoint"] == "http://127.0.0.1:9000"
    assert driver["forcepathstyle"] is True
    assert driver["secure"] is False
    assert driver["v4auth"] is True
    assert driver["bucket"] == moto.BUCKET
    assert (driver["accesskey"], driver["secretkey"]) == (moto.ACCESS_KEY, moto.SECRET_KEY)
    # The same part size as registryd's, under its own prefix of the shared bucket.
    assert driver["chunksize"] == 16 * MiB
    assert driver["rootdirectory"] == s3.DISTRIBUTION_ROOT
    assert config["storage"]["redirect"] == {"disable": False}
    assert config["http"]["addr"] == "127.0.0.1:5123"
    proxied = yaml.safe_load(s3.distribution_config(5123, "http://x", False, 16 * MiB))
    assert proxied["storage"]["redirect"] == {"disable": True}


def test_registryd_settings_are_the_s3_backend_names() -> None:
    settings = s3.registryd_settings("http://127.0.0.1:9000", False, 16 * MiB)
    assert settings == {
        "REGISTRYD_STORAGE": "s3",
        "REGISTRYD_S3_BUCKET": moto.BUCKET,
        "REGISTRYD_S3_PREFIX": s3.REGISTRYD_PREFIX,
        "REGISTRYD_S3_REGION": moto.REGION,
        "REGISTRYD_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "REGISTRYD_S3_PATH_STYLE": "true",
        "REGISTRYD_S3_REDIRECT": "false",
        "REGISTRYD_S3_PART_BYTES": str(16 * MiB),
    }
    assert s3.registryd_settings("http://e", True, MiB)["REGISTRYD_S3_REDIRECT"] == "true"
    if "storage" in setting_names():
        # A build with the backend parses them all.
        resolved = resolve(settings)
        assert resolved.unknown_env == []
        assert s3.registryd_support() is None
    else:
        assert (
            s3.registryd_support() == s3.NO_BACKEND == "registryd has no s3 backend in this build"
        )


def test_servers_get_only_the_dummy_aws_credentials(tmp_path: Path) -> None:
    machine = {
        "PATH": "/usr/bin",
        "AWS_CA_BUNDLE": "/etc/ssl/corp.pem",
        "AWS_PROFILE": "production",
        "AWS_SECRET_ACCESS_KEY": "a-real-key",
        "AWS_SESSION_TOKEN": "a-real-token",
        "AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/x",
    }
    env = s3.client_env(machine, tmp_path)
    assert env["PATH"] == "/usr/bin"
    assert {k for k in env if k.startswith("AWS_")} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_EC2_METADATA_DISABLED",
    }
    assert env["AWS_SECRET_ACCESS_KEY"] == moto.SECRET_KEY
    assert not Path(env["AWS_CONFIG_FILE"]).exists()  # no profile of this machine is read
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"


def test_layout_gives_each_process_a_cpu_only_when_there_are_three() -> None:
    assert s3.layout(2) == (None, None, None)
    assert s3.layout(1) == (None, None, None)
    assert s3.layout(8) == ("0", "1", "2")


def test_wrk_pull_points_last_long_enough_for_every_connection() -> None:
    assert s3.wrk_seconds(3.0, 1, 16 * MiB) == 3.0
    # 16 connections x 128 MiB at moto's ~200 MB/s: about two bodies each.
    long = s3.wrk_seconds(3.0, 16, 128 * MiB)
    assert long * s3.STORE_BYTES_PER_SECOND >= 2 * 16 * 128 * MiB


# The table -------------------------------------------------------------------------


def _sample(
    mb: float, server_cpu: float, store_cpu: float, client_cpu: float = 0.1, errors: int = 0
) -> s3.S3Sample:
    result = RunResult(requests=4, body_bytes=int(mb * 1e6), errors=errors, seconds=1.0)
    if errors:
        result.error_kinds["wrk: read"] = errors
    return s3.S3Sample(result, server_cpu, client_cpu, 60 * MiB, store_cpu, 200 * MiB)


def _render(*points: Point, missing: dict[str, str] | None = None) -> str:
    outcome = s3.Outcome(list(points), missing or {}, "moto 5")
    return s3_report.render(outcome, "python -m bench --sections s3")


def _rows(text: str, start: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(start)
    ]


def _row(text: str, start: str) -> list[str]:
    [row] = _rows(text, start)
    return row


def test_table_gives_the_ratio_and_moto_share_of_each_target() -> None:
    point = Point(s3.PULL_PROXIED, "16 MiB", 16, "MB/s")
    point.samples["registryd"] = [_sample(300, 0.3, 0.6), _sample(320, 0.3, 0.6)]
    point.samples["distribution"] = [_sample(200, 0.5, 0.5)]
    text = _render(point)
    row = _row(text, f"| {s3.PULL_PROXIED} | 16 MiB | 16 |")
    assert row[3:6] == ["310", "200", "1.55x"]
    assert row[6] == "60% / 50%"  # moto's CPU
    assert row[7] == "67% / 50%"  # moto's part of the server-side CPU
    assert row[8] == "10% / 10%"  # client CPU
    assert row[9] == "60 / 60"  # peak RSS of each registry
    assert row[10] == "200"  # moto's
    assert "Reproduce: `python -m bench --sections s3`" in text


def test_a_busy_moto_or_client_marks_the_value_and_the_ratio() -> None:
    point = Point(s3.PUSH, "16 MiB POST+PUT", 8, "MB/s")
    point.samples["registryd"] = [_sample(100, 0.4, 0.95)]
    point.samples["distribution"] = [_sample(100, 0.4, 0.5, client_cpu=0.95)]
    row = _row(_render(point), f"| {s3.PUSH} |")
    assert row[3] == "100 moto-bound"
    assert row[4] == "100 client-bound"
    assert row[5] == "1.00x (client-bound, moto-bound)"


def test_failed_requests_invalidate_the_ratio() -> None:
    point = Point(s3.PULL_PROXIED, "128 MiB", 1, "MB/s")
    point.samples["registryd"] = [_sample(100, 0.4, 0.5, errors=3)]
    point.samples["distribution"] = [_sample(50, 0.4, 0.5)]
    row = _row(_render(point), f"| {s3.PULL_PROXIED} |")
    assert row[3] == "100 **FAILED**"
    assert row[5] == "INVALID (2.00x over failed requests)"


def test_a_missing_target_is_said_and_leaves_dashes() -> None:
    point = Point(s3.PULL_REDIRECT, "16 MiB", 1, "MB/s")
    point.samples["distribution"] = [_sample(80, 0.05, 0.9)]
    text = _render(point, missing={"registryd": s3.NO_BACKEND})
    assert f"**registryd: no rows: {s3.NO_BACKEND}**" in text
    row = _row(text, f"| {s3.PULL_REDIRECT} |")
    assert row[3] == "-"
    assert row[5] == "-"
    assert row[6] == "- / 90%"
    assert "wrk does not follow redirects" in text


# moto --------------------------------------------------------------------------------


def _put(server: Server, key: str, body: bytes) -> None:
    url = f"{moto.endpoint(server)}/{moto.BUCKET}/{key}"
    # Not urllib's default form type, which the server would parse as a form.
    headers = {"Content-Type": "application/octet-stream"}
    request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 200


@needs_moto
def test_moto_starts_with_the_bucket_and_stops_by_pid(tmp_path: Path) -> None:
    server = moto.start_moto(tmp_path / "moto")
    try:
        assert server.name == "moto"
        assert moto.object_count(server, moto.BUCKET) == 0
        moto.create_bucket(server, moto.BUCKET)  # already there: kept
        _put(server, "registryd/blobs/keep-me", b"x" * 100)
        before = moto.keys(server, moto.BUCKET)
        _put(server, "registryd/blobs/pushed-1", b"y" * 100)
        _put(server, "registryd/blobs/other-size", b"z" * 99)
        assert moto.object_count(server, moto.BUCKET, "registryd/") == 3
        deleted = s3.delete_objects_of_size(server, moto.BUCKET, 100, before)
        assert deleted == 1
        keys = [key for key, _ in moto.list_objects(server, moto.BUCKET)]
        assert sorted(keys) == ["registryd/blobs/keep-me", "registryd/blobs/other-size"]
    finally:
        server.stop()
    assert server.proc.returncode is not None
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(f"{moto.endpoint(server)}/moto-api/", timeout=2)


@needs_moto
def test_moto_that_cannot_start_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A port already taken: moto exits, and the launcher reports its log.
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(moto, "free_port", lambda: taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="moto exited"):
            moto.start_moto(tmp_path / "moto")


@needs_moto
@needs_distribution
async def test_distribution_on_moto_redirects_and_the_client_follows(tmp_path: Path) -> None:
    """distribution 2.8 with its s3 driver on moto: a pushed blob comes back proxied and,
    with redirects on, through the 307 the Python client follows."""
    store = await asyncio.to_thread(moto.start_moto, tmp_path / "moto")
    servers: list[Server] = []
    try:
        endpoint = moto.endpoint(store)
        blob = workloads.make_blob("s3-test", 64 * 1024)
        data = workloads.blob_bytes(blob.label, blob.size)
        path = v2.blob_path(blob.digest_hex)
        for redirect in (False, True):
            server = await asyncio.to_thread(
                s3.start_distribution_s3, tmp_path / "d", None, endpoint, redirect, 5 * MiB
            )
            servers.append(server)
            conn = Connection("127.0.0.1", server.port)
            try:
                if not redirect:
                    await v2.push_monolithic(conn, blob.digest_hex, data, len(data), {})
                    resp = await conn.request("GET", path)
                    assert (resp.status, resp.body_bytes) == (200, blob.size)
                    with pytest.raises(HttpError, match="not a redirect"):
                        await s3.RedirectPulls([path]).pull(conn, path)
                else:
                    follow = s3.RedirectPulls([path])
                    try:
                        assert await follow.pull(conn, path) == blob.size
                        assert await follow.pull(conn, path) == blob.size  # reuses its conn
                        assert len(follow._store) == 1
                    finally:
                        follow.close()
            finally:
                conn.close()
                server.stop()
        # Under distribution's root in the shared bucket.
        assert moto.object_count(store, moto.BUCKET, s3.DISTRIBUTION_ROOT.strip("/") + "/") > 0
    finally:
        for server in servers:
            server.stop()
        store.stop()


def _run_section(out: Path) -> subprocess.CompletedProcess[str]:
    argv = ["--smoke", "--no-install", "--sections", "s3", "--targets", "registryd,distribution"]
    return run_bench([*argv, "--out", str(out)])


@needs_moto
@needs_distribution
@pytest.mark.skipif(not wrk.available(), reason="wrk is not installed")
async def test_section_smoke_run_gives_distribution_rows(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    result = await asyncio.to_thread(_run_section, out)
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    assert "Every request of every point succeeded." in report
    text = report[report.index("## S3 backend") :]  # the section's own table
    for section in (s3.PULL_PROXIED, s3.PULL_REDIRECT, s3.PUSH):
        rows = _rows(text, f"| {section} | 256 KiB")
        assert [row[2] for row in rows] == (["1", "2"] if section == s3.PUSH else ["1", "4"])
        for row in rows:
            assert row[4] not in ("-", "0"), row  # distribution moved bytes
            assert "FAILED" not in row[4]
            assert row[6].endswith("%")  # moto's CPU was measured
    if s3.registryd_support() is not None:
        assert s3.NO_BACKEND in result.stderr
        assert f"registryd: no rows: {s3.NO_BACKEND}" in text
    else:
        assert all(row[3] != "-" for row in _rows(text, f"| {s3.PUSH} |"))


@needs_moto
async def test_a_registry_that_stores_elsewhere_is_dropped(tmp_path: Path) -> None:
    """registryd only warns about settings it does not know: one that kept its blobs on its
    filesystem would give rows that are not S3's. The bucket is checked after seeding."""
    from bench.__main__ import SMOKE, Bench
    from bench.targets import start_registryd

    store = await asyncio.to_thread(moto.start_moto, tmp_path / "moto")
    try:
        bench = Bench(SMOKE, tmp_path, ["registryd"], ("s3",))
        section = s3.Section(bench, store, (None, None, None))
        local = await asyncio.to_thread(start_registryd, tmp_path / "fs", None)
        servers = {"registryd": local}
        try:
            await section.seed(servers)
            await section.check_in_bucket(servers)
        finally:
            local.stop()
        assert servers == {}
        assert local.proc.returncode is not None  # stopped
        assert section.missing == {"registryd": "stored nothing under 'registryd' in the bucket"}
    finally:
        store.stop()
