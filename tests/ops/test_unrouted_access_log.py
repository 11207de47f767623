"""aiohttp's own access log (requests it answers itself) is skipped per connection only when
its lines would not be logged anyway."""

from __future__ import annotations

import logging

from registryd.ops.observe import UnroutedAccessLogger


def test_enabled_follows_the_access_loggers_level() -> None:
    logger = logging.getLogger("registryd.access.test-unrouted")
    try:
        logger.setLevel(logging.WARNING)
        assert not UnroutedAccessLogger(logger, "").enabled
        logger.setLevel(logging.INFO)
        assert UnroutedAccessLogger(logger, "").enabled
    finally:
        logger.setLevel(logging.NOTSET)
