"""``registryd config check``: the effective settings, each with its source, secrets masked."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from registryd.config import Resolved, Upstream

MASK = "***"
# Settings whose whole value is a secret (token signing key, admin password, ...).
_SECRET_NAME = re.compile(r"(password|secret|private_key)", re.IGNORECASE)
_URL_PASSWORD_PARAM = re.compile(r"(?i)(password=)[^&]*")


def mask_url(url: str) -> str:
    """``url`` with the password of its user info (and any ``password=`` parameter) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    query = _URL_PASSWORD_PARAM.sub(rf"\g<1>{MASK}", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def masked(name: str, value: object) -> object:
    """The value as it may be printed: secrets masked, URLs without passwords."""
    if value is None or value == "":
        return value
    if _SECRET_NAME.search(name):
        return MASK
    if name.endswith("_url") and isinstance(value, str):
        return mask_url(value)
    return value


def _upstreams_value(upstreams: tuple[Upstream, ...]) -> str:
    """An inline TOML array of the upstreams' tables, each secret masked."""
    tables = []
    for upstream in upstreams:
        pairs = [
            f"{field.name} = {_toml_value(masked(field.name, getattr(upstream, field.name)))}"
            for field in dataclasses.fields(upstream)
            if getattr(upstream, field.name) is not None
        ]
        tables.append("{" + ", ".join(pairs) + "}")
    return "[" + ", ".join(tables) + "]"


def _toml_value(value: object) -> str:
    if isinstance(value, tuple) and all(isinstance(item, Upstream) for item in value):
        return _upstreams_value(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # An inline table ([[retention]] rules); reads back as the same setting.
        fields = dataclasses.asdict(value)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in fields.items()) + "}"
    return json.dumps(str(value))  # a TOML basic string is JSON-compatible


def describe(resolved: Resolved) -> str:
    """The settings as TOML (usable as a ``--config`` file), each with its source as a comment."""
    lines = ["# registryd: effective configuration (secrets masked)"]
    for field in dataclasses.fields(resolved.settings):
        value = masked(field.name, getattr(resolved.settings, field.name))
        source = resolved.sources[field.name]
        if value is None:
            lines.append(f"# {field.name} is unset  ({source})")
        else:
            lines.append(f"{field.name} = {_toml_value(value)}  # {source}")
    lines.extend(
        f"# warning: {var} names no setting and is ignored" for var in resolved.unknown_env
    )
    return "\n".join(lines)
