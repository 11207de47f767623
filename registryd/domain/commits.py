""" "Commit the bytes and record the row": one unit for every writer (v1 layers, v2 uploads).

Once a blob's bytes start moving to their content address, the database rows
that account for them (the blob's row, the image's layer or the repository's
link) must be written too, or not at all. A client that goes away or a drain
that cancels the request must not split that. So the unit runs as a task of its
own: the caller's cancellation waits for it (and is then re-raised), and the
task is registered in ``Services.commits`` so that shutting down waits for it
before closing the pool under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from registryd.domain.services import Services

log = logging.getLogger(__name__)

_T = TypeVar("_T")


async def run_commit(svc: Services, unit: Coroutine[Any, Any, _T]) -> _T:
    """Run ``unit`` to its end whatever happens to the caller; return or raise its outcome.

    A cancelled caller waits for the unit, then sees the cancellation.
    """
    task = asyncio.ensure_future(unit)
    svc.commits.add(task)
    task.add_done_callback(svc.commits.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
        raise


async def wait_for_commits(svc: Services, timeout_seconds: float) -> int:
    """Wait (bounded) for every commit unit in flight; return how many were still running.

    Called before the pool closes: a unit cut there would leave stored bytes without
    their row (the sweepers and scrub find those, but only later).
    """
    pending = list(svc.commits)
    if pending:
        log.info("waiting for %d blob commit(s) before closing the pool", len(pending))
        _, still = await asyncio.wait(pending, timeout=timeout_seconds)
        if still:
            log.warning("%d blob commit(s) still running at shutdown", len(still))
    return len(pending)
