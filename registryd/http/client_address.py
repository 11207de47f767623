"""The client's address, also behind a reverse proxy or an ingress.

Behind a proxy every connection comes from the proxy, so per-address login
throttling would count every user as one (an attacker could lock them all out)
and the access log would name only the proxy. When the connection comes from
one of ``trusted_proxies``, the client is the right-most ``X-Forwarded-For``
entry that is not itself a trusted proxy: each proxy appends the address it
saw, so entries to the left of it were written by the client and prove nothing.
Without ``trusted_proxies`` the header is ignored, so no client can choose the
address it is counted under.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from registryd.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ADDRESS = web.RequestKey("client_address", str)


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: IPAddress, trusted: tuple[IPNetwork, ...]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


def forwarded_client(peer: str, forwarded_for: list[str], trusted: tuple[IPNetwork, ...]) -> str:
    """The client behind ``peer`` given the ``X-Forwarded-For`` header lines."""
    hop = _address(peer)
    if hop is None or not trusted or not _trusted(hop, trusted):
        return peer
    entries = [entry for line in forwarded_for for entry in line.split(",")]
    for entry in reversed(entries):
        address = _address(entry)
        if address is None:
            break  # not written by a proxy we trust: the last good hop is the client
        hop = address
        if not _trusted(hop, trusted):
            break
    return str(hop)


def client_address(request: web.Request, trusted: tuple[IPNetwork, ...]) -> str:
    """The client's address for throttling and logs (computed once per request)."""
    if _ADDRESS in request:
        return request[_ADDRESS]
    peer = request.remote or ""
    address = peer
    if trusted:
        address = forwarded_client(peer, request.headers.getall("X-Forwarded-For", []), trusted)
    request[_ADDRESS] = address
    return address
