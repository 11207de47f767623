"""Wait for a condition that another task, process or the database brings about."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

WITHIN_SECONDS = 20.0


async def eventually(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    what: str,
    within_seconds: float = WITHIN_SECONDS,
) -> None:
    """Return once ``check()`` is true; fail naming ``what`` after ``within_seconds``."""
    deadline = asyncio.get_running_loop().time() + within_seconds
    while True:
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
