"""Look at what the filesystem backend holds, to assert that nothing leaked."""

from __future__ import annotations

from pathlib import Path

from registryd.config import Settings
from registryd.storage import paths


def blob_files(settings: Settings) -> list[Path]:
    root = paths.blobs_dir(settings.storage_root)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def upload_files(settings: Settings) -> list[Path]:
    root = paths.uploads_dir(settings.storage_root)
    return sorted(root.iterdir()) if root.exists() else []
