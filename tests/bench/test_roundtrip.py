"""``python -m bench.profile head`` prints the HEAD round-trip table with every row measured."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from bench.targets import find_binary

REPO = Path(__file__).resolve().parents[2]


def _run() -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRYD_")}
    return subprocess.run(
        [sys.executable, "-m", "bench.profile", "head", "--requests", "20", "--rounds", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


async def test_head_profile_measures_registryd_next_to_its_floors() -> None:
    result = await asyncio.to_thread(_run)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")
        for line in result.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| request")
    }
    expected = {
        "aiohttp handler on uvloop (bench.bare)",
        "registryd /v1/_ping (middlewares only)",
        "registryd blob HEAD, auth none",
        "registryd blob HEAD, Bearer",
        "registryd manifest HEAD, Bearer",
    }
    if find_binary("nginx") is not None:
        expected.add("nginx, static file")
    assert set(rows) == expected
    for cells in rows.values():
        assert float(cells[1]) > 0  # p50 in microseconds
        assert cells[-1].rstrip(" |").endswith("x")  # ratio to the bare handler
    assert rows["aiohttp handler on uvloop (bench.bare)"][-1].startswith("1.00x")
