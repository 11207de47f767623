"""After a push point the pushed layers go, the pull blobs of the same size stay."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import _unlink_files_of_size


def test_pushed_layers_are_removed_and_pull_blobs_kept(tmp_path: Path) -> None:
    blobs = tmp_path / "data" / "storage" / "blobs" / "sha256"
    kept = blobs / "aa" / ("aa" + "1" * 62)
    pushed = blobs / "bb" / ("bb" + "2" * 62)
    other = blobs / "cc" / ("cc" + "3" * 62)
    for path, size in ((kept, 100), (pushed, 100), (other, 99)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    removed = _unlink_files_of_size(tmp_path, 100, frozenset({kept.name}))
    assert removed == 100
    assert kept.exists()
    assert not pushed.exists()
    assert other.exists()  # another size: not a pushed layer
