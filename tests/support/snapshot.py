"""Everything registryd has stored, to assert that a refused request changed nothing."""

from __future__ import annotations

from typing import Any

import asyncpg

from registryd.config import Settings
from tests.support.store import blob_files, upload_files

TABLES = ("blobs", "v1_images", "repositories", "v1_tags")


async def snapshot(db: asyncpg.Connection, settings: Settings) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for table in TABLES:
        rows = await db.fetch(f"SELECT * FROM {table} ORDER BY 1")
        state[table] = [dict(r) for r in rows]
    state["blob files"] = [(p.name, p.read_bytes()) for p in blob_files(settings)]
    state["upload files"] = upload_files(settings)
    return state
