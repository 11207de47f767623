"""Typed keys for what the aiohttp application and its requests carry."""

from __future__ import annotations

from aiohttp import web

from registryd.config import Settings
from registryd.domain.services import Services
from registryd.ops.lifecycle import Lifecycle
from registryd.ops.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
METRICS = web.AppKey("metrics", Metrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)

# Who and what a request is about, for its access-log line. Whoever learns it
# (authentication, a handler) sets it; unset means unknown.
USER = web.RequestKey("user", str)
REPOSITORY = web.RequestKey("repository", str)
