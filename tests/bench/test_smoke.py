"""A smoke run of ``python -m bench`` at tiny sizes, so it cannot rot. Speed is not checked."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from bench.__main__ import SECTIONS, main
from tests.support.bench_run import run_bench


def _run_bench(out: Path) -> subprocess.CompletedProcess[str]:
    # Every section but s3, which has its own smoke run (tests/bench/test_s3.py).
    sections = ",".join(name for name in SECTIONS if name != "s3")
    return run_bench(
        [
            "--smoke",
            "--no-install",
            "--targets",
            "registryd",
            "--sections",
            sections,
            "--out",
            str(out),
        ]
    )


async def test_bench_smoke_run_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    result = await asyncio.to_thread(_run_bench, out)
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    for section in (
        "| pull v2, Bearer |",
        "| pull v1 |",
        "| push v2 | 256 KiB POST+PUT |",
        "| push v2 | 256 KiB POST+PATCH+PUT |",
        "| push v1 |",
        "| metadata v2, Bearer | manifest GET |",
        "| metadata v2, Bearer | manifest HEAD",
        "| metadata v1 |",
        "| memory |",
        "| pull over TLS |",
        "## Rollout",
        "| 4 | registryd |",  # every one of the 4 nodes pulled the image
        "Server CPU seconds per GB",
        "| unpinned, 2 workers |",
        "## Worker scaling",
        "## Access checks on the pull path",
    ):
        assert section in report
    assert "FAILED" not in report  # every request of the smoke run succeeded
    assert "Every request of every point succeeded." in report


def test_an_unknown_section_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--smoke", "--no-install", "--sections", "rollout,bogus"])
    assert exc.value.code == 2
    assert "unknown section(s) bogus" in capsys.readouterr().err
