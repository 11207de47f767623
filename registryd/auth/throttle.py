"""Failed-login throttling, per client address and per account (429 with ``Retry-After``).

Guessing passwords costs us an Argon2 hash per guess; after
``login_failures_per_address`` failures from one address, or
``login_failures_per_account`` failures for one account, within
``login_failure_window_seconds``, further attempts are refused *before*
hashing until the oldest failure leaves the window. A password this process
recently verified is still accepted (it costs no hash), so an attack on an
account does not lock out its owner's running clients; new logins to an
attacked account wait, which is the point. Counts are kept per process, in
memory, for a bounded number of keys.
"""

from __future__ import annotations

import collections
import math
import time

from aiohttp import web

from registryd.config import Settings
from registryd.errors import TooManyRequests

# Addresses and accounts remembered at most (the oldest are forgotten first).
MAX_KEYS = 100_000


class _Window:
    """Failure times per key within a sliding window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._failures: dict[str, collections.deque[float]] = {}

    def _recent(self, key: str, now: float) -> collections.deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and now - times[0] >= self.seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> int | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        if self.limit == 0:
            return None
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.seconds - now))

    def add(self, key: str, now: float) -> None:
        if self.limit == 0:
            return
        times = self._recent(key, now)
        if times is None:
            while len(self._failures) >= MAX_KEYS:
                del self._failures[next(iter(self._failures))]
            times = self._failures[key] = collections.deque(maxlen=self.limit)
        times.append(now)


class LoginThrottle:
    def __init__(self, per_address: int, per_account: int, window_seconds: float) -> None:
        self._addresses = _Window(per_address, window_seconds)
        self._accounts = _Window(per_account, window_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(
            settings.login_failures_per_address,
            settings.login_failures_per_account,
            settings.login_failure_window_seconds,
        )

    def check(self, address: str, account: str) -> None:
        """Raise TooManyRequests if either has failed too often lately."""
        now = time.monotonic()
        wait = self._addresses.retry_after(address, now)
        if wait is not None:
            raise TooManyRequests("Too many failed logins from this address; retry later", wait)
        wait = self._accounts.retry_after(account, now)
        if wait is not None:
            raise TooManyRequests("Too many failed logins for this account; retry later", wait)

    def failed(self, address: str, account: str) -> None:
        now = time.monotonic()
        self._addresses.add(address, now)
        self._accounts.add(account, now)


LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
