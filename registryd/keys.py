"""Typed keys for what the aiohttp application carries."""

from __future__ import annotations

from aiohttp import web

from registryd.config import Settings
from registryd.domain.services import Services

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
