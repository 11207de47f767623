"""The bench never leaves a server running when a later one fails to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import running
from bench.targets import Server, start_registryd


def test_servers_started_before_a_failing_one_are_stopped(tmp_path: Path) -> None:
    started: list[Server] = []

    def first() -> Server:
        started.append(start_registryd(tmp_path / "first", None))
        return started[0]

    with (
        pytest.raises(RuntimeError, match="registryd exited"),
        running(
            {
                "first": first,
                # Not a mode registryd knows: it refuses to start.
                "second": lambda: start_registryd(tmp_path / "second", None, auth_mode="x"),
            }
        ),
    ):
        pass
    assert len(started) == 1
    assert started[0].proc.poll() is not None  # stopped, not left running
