"""Token mode with a bootstrapped admin, for the modules that import these fixtures."""

from tests.auth.conftest import client, settings

__all__ = ["client", "settings"]
