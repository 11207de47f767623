"""bench.ui stays runnable: a small repository, a couple of rounds, every page answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ui import run


async def test_bench_ui_runs_every_page(
    template_ready: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await run(template_ready, tmp_path / "data", tags=120, repeat=2)
    out = capsys.readouterr().out
    for page in ("catalog", "repository, last page", "image"):
        assert page in out
    assert "budget: median < 50 ms per page" in out
