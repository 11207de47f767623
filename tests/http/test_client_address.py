"""Attack: behind an ingress, lock every user out by failing logins under the proxy's address,
or dodge the per-address throttle by writing a new X-Forwarded-For each time.

With ``trusted_proxies`` the client is the right-most X-Forwarded-For entry that
is not a trusted proxy; without it the header is ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from aiohttp.pytest_plugin import AiohttpClient

from registryd.app import create_app
from registryd.config import ConfigError, IPNetwork, Settings, resolve
from registryd.http.client_address import forwarded_client
from tests.conftest import Client
from tests.support.docker_v1 import basic

PER_ADDRESS = 3
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
PROXIES = (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.1.0.5", ["203.0.113.7"], "203.0.113.7"),
        # The client wrote the left entry; the proxy appended what it saw.
        ("10.1.0.5", ["198.51.100.1, 203.0.113.7"], "203.0.113.7"),
        # Two proxies in a row; header lines are one list.
        ("10.1.0.5", ["203.0.113.7", "10.1.2.3"], "203.0.113.7"),
        ("10.1.0.5", ["203.0.113.7, 10.1.2.3"], "203.0.113.7"),
        # An untrusted peer's header proves nothing.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # Garbage next to the proxy: the proxy itself is the nearest known hop.
        ("10.1.0.5", ["198.51.100.1, not-an-ip"], "10.1.0.5"),
        ("10.1.0.5", [], "10.1.0.5"),
        # Only trusted hops: the left-most.
        ("10.1.0.5", ["10.1.9.9"], "10.1.9.9"),
        ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:10.1.0.5", ["203.0.113.7"], "203.0.113.7"),
        ("", ["203.0.113.7"], ""),
    ],
)
def test_client_is_the_right_most_untrusted_hop(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert forwarded_client(peer, forwarded, PROXIES) == client


def test_no_trusted_proxies_means_the_peer() -> None:
    assert forwarded_client("10.1.0.5", ["203.0.113.7"], ()) == "10.1.0.5"


def test_setting_parses_networks_and_names_a_bad_one() -> None:
    settings = resolve({"REGISTRYD_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1,fd00::/8"}).settings
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]
    with pytest.raises(ConfigError, match=r"REGISTRYD_TRUSTED_PROXIES.*10\.0\.0\.1/8"):
        resolve({"REGISTRYD_TRUSTED_PROXIES": "10.0.0.1/8"})  # host bits set: a typo
    with pytest.raises(ConfigError, match=r"proxy\.example"):
        resolve({"REGISTRYD_TRUSTED_PROXIES": "proxy.example"})


def _settings(settings: Settings, trusted: tuple[IPNetwork, ...]) -> Settings:
    return dataclasses.replace(
        settings,
        login_failures_per_address=PER_ADDRESS,
        login_failures_per_account=1000,
        login_failure_window_seconds=60,
        trusted_proxies=trusted,
    )


async def _fail(client: Client, forwarded_for: str) -> int:
    headers = {"Authorization": basic("nobody", "wrong"), "X-Forwarded-For": forwarded_for}
    async with client.get("/v1/users/", headers=headers) as resp:
        return resp.status


async def test_behind_a_trusted_proxy_one_attacker_does_not_lock_out_others(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(create_app(_settings(settings, LOOPBACK)))
    statuses = [await _fail(client, "203.0.113.66") for _ in range(PER_ADDRESS + 2)]
    assert statuses[:PER_ADDRESS] == [401] * PER_ADDRESS
    assert statuses[PER_ADDRESS:] == [429, 429]  # the attacker is throttled...
    # ...even when it writes its own entry first: the proxy's appended one counts.
    assert await _fail(client, "198.51.100.1, 203.0.113.66") == 429
    # Another client behind the same proxy is still heard (and told its password is wrong).
    assert await _fail(client, "203.0.113.10") == 401


async def test_an_untrusted_client_cannot_dodge_the_throttle_with_the_header(
    settings: Settings, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(create_app(_settings(settings, ())))
    statuses = [await _fail(client, f"203.0.113.{n}") for n in range(PER_ADDRESS + 2)]
    assert statuses[:PER_ADDRESS] == [401] * PER_ADDRESS
    assert statuses[PER_ADDRESS:] == [429, 429]
