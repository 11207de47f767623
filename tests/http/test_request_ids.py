"""Generated request ids: 16 hex digits, distinct per request, and a forked worker never
counts through its parent's ids."""

from __future__ import annotations

import os
import re

from registryd.http.middleware import _REQUEST_IDS
from tests.conftest import Client


async def test_generated_ids_are_distinct_hex(client: Client) -> None:
    seen = set()
    for _ in range(20):
        resp = await client.get("/v1/_ping")
        rid = resp.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{16}", rid)
        seen.add(rid)
    assert len(seen) == 20


def test_a_forked_process_takes_another_prefix() -> None:
    parent = _REQUEST_IDS.next()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        try:
            os.write(write, _REQUEST_IDS.next().encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child) == 16
    assert child[:8] != parent[:8]
    assert _REQUEST_IDS.next()[:8] == parent[:8]  # the parent keeps its own


def test_a_wrapped_counter_takes_another_prefix() -> None:
    first = _REQUEST_IDS.next()
    _REQUEST_IDS._counter = iter([0x1_0000_0000])  # type: ignore[assignment]  # as if 2**32 ids were handed out
    after = _REQUEST_IDS.next()
    assert after[:8] != first[:8]
    assert after[8:] == "00000000"
