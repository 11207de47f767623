"""Failed UI logins per client address: after too many in a window, logins wait.

Per process and in memory: it slows password guessing through the login form without
shared state; a correct password does not reset a locked-out address early.
"""

from __future__ import annotations

import time
from collections import deque

from aiohttp import web

MAX_FAILURES = 5
WINDOW_SECONDS = 300.0
# Addresses tracked at once; the oldest entries go first when an attack spreads wide.
_MAX_ADDRESSES = 10_000


class LoginThrottle:
    def __init__(
        self, max_failures: int = MAX_FAILURES, window_seconds: float = WINDOW_SECONDS
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again; 0 when it may now."""
        now = time.monotonic()
        failures = self._recent(address, now)
        if len(failures) < self.max_failures:
            return 0
        return max(1, int(failures[0] + self.window_seconds - now) + 1)

    def failed(self, address: str) -> None:
        now = time.monotonic()
        failures = self._recent(address, now)
        if not failures:
            if len(self._failures) >= _MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]
            self._failures[address] = failures
        failures.append(now)


THROTTLE = web.AppKey("ui_login_throttle", LoginThrottle)
