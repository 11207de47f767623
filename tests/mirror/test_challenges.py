"""WWW-Authenticate parsing, and where upstream credentials may be sent."""

from __future__ import annotations

from registryd.config import Upstream
from registryd.mirror.upstream import Challenge, UpstreamClient, parse_challenge


def test_bearer_and_basic_challenges() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'
    assert parse_challenge(header) == Challenge(
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/alpine:pull",
        },
    )
    assert parse_challenge('Basic realm="Registry Realm"') == Challenge(
        "basic", {"realm": "Registry Realm"}
    )
    assert parse_challenge("bearer realm=http://r.example/t") == Challenge(
        "bearer", {"realm": "http://r.example/t"}
    )


def test_unusable_challenges() -> None:
    assert parse_challenge(None) is None
    assert parse_challenge("") is None
    assert parse_challenge('Digest realm="x"') is None
    assert parse_challenge('Bearer service="x"') is None  # no realm to ask
    assert parse_challenge('Bearer realm="file:///etc/passwd"') is None


async def test_credentials_go_only_to_https_or_the_upstreams_own_host() -> None:
    client = UpstreamClient(Upstream("x.io", "http://registry.example:5000", "u", "p"))
    try:
        assert client.may_send_credentials("https://auth.elsewhere.example/token")
        assert client.may_send_credentials("http://registry.example:5001/token")
        assert not client.may_send_credentials("http://attacker.example/token")
    finally:
        await client.close()
