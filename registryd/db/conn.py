"""The connection type every query function takes."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from the pool.
Conn = asyncpg.Connection | PoolConnectionProxy
