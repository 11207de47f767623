"""Typed keys for what the aiohttp application and its requests carry.

The types are named for the type checker only: the domain and ops import these
keys, so importing them back at run time would make a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from registryd.config import Settings
    from registryd.domain.services import Services
    from registryd.ops.lifecycle import Lifecycle
    from registryd.ops.metrics import Metrics

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SERVICES: web.AppKey[Services] = web.AppKey("services")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("lifecycle")

# Who and what a request is about, for its access-log line. Whoever learns it
# (authentication, a handler) sets it; unset means unknown.
USER = web.RequestKey("user", str)
REPOSITORY = web.RequestKey("repository", str)
