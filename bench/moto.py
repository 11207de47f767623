"""moto's standalone S3 server (``moto[server]`` from PyPI) as the bench's S3 endpoint.

It runs as its own process on a free 127.0.0.1 port, from this interpreter
(``python -m moto.server``), with its spill files (objects above a few MiB)
under the bench's temp dir; it is stopped by its PID like the other servers.
moto does not check signatures, so any access key works; the bench still
gives every client the same dummy pair so that each signs as it would on AWS.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.targets import Server, _pin, _spawn, free_port

BUCKET = "registryd-bench"
REGION = "us-east-1"
# Dummy credentials: moto accepts any; never real ones.
ACCESS_KEY, SECRET_KEY = "bench-access-key", "bench-secret-key"


def available() -> bool:
    """Whether moto's server can run here (``pip install 'moto[server]'``)."""
    return all(importlib.util.find_spec(name) for name in ("moto", "flask", "boto3"))


def endpoint(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


def start_moto(workdir: Path, cpus: str | None = None, bucket: str = BUCKET) -> Server:
    """Start moto's server, wait until it answers, create ``bucket``; a ``Server`` whose
    ``stop()`` ends it by its PID. Raises RuntimeError (with its log) if it does not come up."""
    if not available():
        raise RuntimeError("moto's server is not installed: pip install 'moto[server]'")
    port = free_port()
    spill = workdir / "tmp"
    spill.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(spill), "MOTO_PORT": str(port)}
    argv = [*_pin(cpus), sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = _spawn("moto", workdir, port, argv, env)
    try:
        _wait_ready(server, timeout=60)
        create_bucket(server, bucket)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            log = (server.workdir / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"moto exited {server.proc.returncode}:\n{log}")
        try:
            # moto's own API: answers once the app is up, whatever the S3 state.
            with urllib.request.urlopen(f"{endpoint(server)}/moto-api/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto not ready in {timeout}s")


def client(server: Server) -> Any:
    """A boto3 S3 client of the bench's dummy credentials (moto refuses some unsigned
    requests, such as DELETE); path style, as the registries use it."""
    # boto3 comes with moto[server]; imported by name: it ships no type information.
    boto3 = importlib.import_module("boto3")
    config = importlib.import_module("botocore.config").Config(s3={"addressing_style": "path"})
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    return session.client("s3", endpoint_url=endpoint(server), config=config)


def create_bucket(server: Server, bucket: str) -> None:
    """Create ``bucket``; an existing one is kept."""
    s3 = client(server)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)


def list_objects(server: Server, bucket: str, prefix: str = "") -> Iterator[tuple[str, int]]:
    """Every (key, size) under ``prefix``, page by page."""
    pages = client(server).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            yield item["Key"], item["Size"]


def keys(server: Server, bucket: str) -> frozenset[str]:
    return frozenset(key for key, _ in list_objects(server, bucket))


def object_count(server: Server, bucket: str, prefix: str = "") -> int:
    return sum(1 for _ in list_objects(server, bucket, prefix))


def delete_keys(server: Server, bucket: str, keys: list[str]) -> None:
    """DeleteObjects, 1,000 keys a request."""
    s3 = client(server)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
