"""Shared fixtures of the attack tests.

Attacks on real ``registryd serve`` processes use the process tests' launcher.
The users (admin, alice, bob, anonymous) sign up against whichever ``client`` a
module uses; modules that attack token mode take tests/auth's ``settings`` and
``client`` (``from tests.security.token_mode import client, settings``).
"""

from tests.auth.conftest import admin, alice, anonymous, bob
from tests.process.conftest import launcher

__all__ = ["admin", "alice", "anonymous", "bob", "launcher"]
