"""The bench never leaves a server running when a later one fails to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import start_all
from bench.targets import Server, start_registryd


def test_servers_started_before_a_failing_one_are_handed_to_the_caller(tmp_path: Path) -> None:
    servers: dict[str, Server] = {}
    try:
        with pytest.raises(RuntimeError, match="registryd exited"):
            start_all(
                servers,
                {
                    "first": lambda: start_registryd(tmp_path / "first", None),
                    # Not a mode registryd knows: it refuses to start.
                    "second": lambda: start_registryd(tmp_path / "second", None, auth_mode="x"),
                },
            )
        assert list(servers) == ["first"]  # so the caller's cleanup stops it
        assert servers["first"].proc.poll() is None
    finally:
        for server in servers.values():
            server.stop()
    assert servers["first"].proc.poll() is not None
