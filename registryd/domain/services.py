"""What domain operations need: the database pool, the blob store and the settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from registryd.access.facts import AccessFacts
from registryd.config import Settings
from registryd.domain.image_cache import ImageCache
from registryd.domain.upload_hashes import UploadHashes
from registryd.storage.base import Backend


@dataclass(frozen=True)
class Services:
    pool: asyncpg.Pool
    storage: Backend
    settings: Settings
    # HMAC key for v1 tokens (config or generated into the data directory).
    token_secret: bytes
    # Per-process cache of v2 upload hash states (the sessions live in the database).
    upload_hashes: UploadHashes = field(default_factory=UploadHashes)
    # Complete images by id: immutable, so safe to keep per process (see image_cache).
    images: ImageCache = field(default_factory=ImageCache)
    # Facts behind access decisions, cached while change notifications arrive (None: no cache).
    access: AccessFacts | None = None
    # Upload sessions a request of this process is claiming or holds right now.
    upload_claims: set[str] = field(default_factory=set)
    # "Commit the bytes and record the row" units in flight (domain/commits.py).
    commits: set[asyncio.Future[Any]] = field(default_factory=set)
