"""The host name clients should use, for the URLs we hand out in headers.

``public_host`` when configured; otherwise the request's ``Host``, which the
client controls: it is echoed into ``WWW-Authenticate`` realms and
``X-Docker-Endpoints``, so anything but ``host[:port]`` (quotes, commas, spaces
that would inject header parameters or endpoints) is refused.
"""

from __future__ import annotations

import re

from aiohttp import web

from registryd.config import Settings
from registryd.errors import HostInvalid

# A DNS name (underscores too: container hostnames), IPv4, or a bracketed IPv6
# literal, with an optional port.
_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)


def external_host(request: web.Request, settings: Settings) -> str:
    """``host[:port]`` for URLs given to this client; raise HostInvalid for a bad Host."""
    if settings.public_host:
        return settings.public_host
    host = request.host
    if _HOST_RE.fullmatch(host) is None:
        raise HostInvalid()
    return host
