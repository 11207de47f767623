"""Who a request acts as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in user, or anonymous (``username`` None)."""

    username: str | None
    is_admin: bool = False

    @property
    def is_anonymous(self) -> bool:
        return self.username is None


ANONYMOUS = Identity(None)
