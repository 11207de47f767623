"""Where the server is in its life (serving or draining) and which requests are in flight.

The drain in ``server.py`` waits on ``wait_idle`` and then cancels what is
left; ``/readyz`` reads ``draining``.
"""

from __future__ import annotations

import asyncio


class Lifecycle:
    def __init__(self) -> None:
        self.draining = False
        # The last /readyz verdict, so that only changes are logged.
        self.ready: bool | None = None
        self._in_flight: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def started(self) -> asyncio.Task[object]:
        """Count the current request task as in flight until ``finished``.

        Two calls rather than a context manager: a generator-based one costs a few
        microseconds on every request."""
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        self._idle.clear()
        return task

    def finished(self, task: asyncio.Task[object]) -> None:
        self._in_flight.discard(task)
        if not self._in_flight:
            self._idle.set()

    async def wait_idle(self, timeout_seconds: float, hurry: asyncio.Event) -> bool:
        """Wait until no request is in flight; False on timeout or when ``hurry`` is set."""
        idle = asyncio.ensure_future(self._idle.wait())
        hurried = asyncio.ensure_future(hurry.wait())
        try:
            await asyncio.wait(
                (idle, hurried), timeout=timeout_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            idle.cancel()
            hurried.cancel()
        return not self._in_flight

    async def cancel_in_flight(self, timeout_seconds: float) -> int:
        """Cancel every in-flight request and wait (bounded) for each to unwind; return how many.

        Unwinding is what removes an upload's temp file: the storage writer's
        ``async with`` cancels the pending blob on the way out.
        """
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_seconds)
        return len(tasks)
