"""Who a request acts as, and what a token it presents grants."""

from __future__ import annotations

from dataclasses import dataclass

from registryd.names import RepositoryName


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in user, or anonymous (``username`` None)."""

    username: str | None
    is_admin: bool = False

    @property
    def is_anonymous(self) -> bool:
        return self.username is None


ANONYMOUS = Identity(None)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token allows: ``access`` on ``repository``, for ``username`` ('' if anonymous)."""

    username: str
    repository: RepositoryName
    access: str
    expires: int
