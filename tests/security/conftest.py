"""Attacks run against the token-mode server of tests/auth, with its real users."""

from __future__ import annotations

from tests.auth.conftest import admin, alice, anonymous, bob, client, settings

__all__ = ["admin", "alice", "anonymous", "bob", "client", "settings"]
