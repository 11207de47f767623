"""The access rules of v1 images, whose ids are global, chosen by clients, and named by no
repository (pure: the repositories referencing an image are facts the caller fetched).

An image is readable through the repositories that declare or tag it, and
declaring or tagging an existing image needs read access to it, so no
repository can make another's private image readable. While an image is
uploading, only writers of the repository holding its id (the first to declare
or upload it, ``v1_image_owners``) may write it; a complete image is immutable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from registryd.access.decision import (
    TOKEN_ALLOWS,
    Action,
    Caller,
    account_may,
    is_open,
    token_allows,
)
from registryd.config import Settings
from registryd.db.repository_queries import RepositoryRow
from registryd.names import RepositoryName


@dataclass(frozen=True)
class ImageAccess:
    """What one caller may do with images, given the repositories that reference them."""

    caller: Caller
    settings: Settings

    @property
    def unrestricted(self) -> bool:
        """No checks at all: open mode, or an admin signed in with a password."""
        return is_open(self.settings) or self.caller.identity.is_admin

    def token_allows(self, action: Action) -> bool:
        """Whether any of the caller's tokens allows ``action`` (on some repository)."""
        return any(action in TOKEN_ALLOWS[g.access] for g in self.caller.grants)

    def may_write(self, repository: RepositoryName) -> bool:
        if self.unrestricted:
            return True
        if self.caller.via_token:
            return token_allows(self.caller, repository, Action.WRITE)
        return account_may(self.caller.identity, repository, True, Action.WRITE, self.settings)

    def may_read(self, referencing: Iterable[RepositoryRow]) -> bool:
        """Whether one of the repositories declaring or tagging an image lets the caller read."""
        if self.unrestricted:
            return True
        if self.caller.via_token:
            granted = {
                g.repository for g in self.caller.grants if Action.READ in TOKEN_ALLOWS[g.access]
            }
            return bool(granted) and any(r.name in granted or r.is_public for r in referencing)
        return any(
            account_may(self.caller.identity, r.name, r.is_public, Action.READ, self.settings)
            for r in referencing
        )

    def publicly_readable(self, referencing: Iterable[RepositoryRow]) -> bool:
        """Whether anyone at all may read the image (so shared caches may keep it)."""
        return is_open(self.settings) or (
            self.settings.anonymous_pull and any(repo.is_public for repo in referencing)
        )
