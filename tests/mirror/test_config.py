"""``[[upstreams]]``: parsed from the file or an inline TOML array, every mistake named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from registryd.config import ConfigError, Upstream, resolve
from registryd.ops.config_check import describe


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registryd.toml"
    path.write_text(text)
    return path


def test_upstreams_from_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "hub-password"
    secret.write_text("hub-secret\n")
    config = write(
        tmp_path,
        f"""
port = 5001
[[upstreams]]
namespace = "docker.io"
url = "https://registry-1.docker.io/"
username = "me"
password_file = "{secret}"

[[upstreams]]
namespace = "ghcr.io"
url = "https://ghcr.io"
tag_ttl_seconds = 60
read_timeout_seconds = 5
""",
    )
    resolved = resolve({}, config_file=config)
    hub, ghcr = resolved.settings.upstreams
    assert hub == Upstream(
        "docker.io", "https://registry-1.docker.io", "me", "hub-secret", library_prefix=True
    )
    assert hub.tag_ttl_seconds == 300
    assert ghcr.library_prefix is False
    assert (ghcr.tag_ttl_seconds, ghcr.read_timeout_seconds) == (60, 5)
    assert resolved.sources["upstreams"] == f"file {config}"
    assert "hub-secret" not in repr(resolved.settings)

    text = describe(resolved)
    assert "hub-secret" not in text
    line = next(x for x in text.splitlines() if x.startswith("upstreams = "))
    parsed = tomllib.loads(line.split("  #", 1)[0])["upstreams"]
    assert parsed[0]["password"] == "***"
    assert parsed[1]["namespace"] == "ghcr.io"


def test_cache_limits(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """
[[upstreams]]
namespace = "docker.io"
url = "https://registry-1.docker.io"
cache_max_bytes = "50GiB"
cache_max_age_seconds = 604800

[[upstreams]]
namespace = "ghcr.io"
url = "https://ghcr.io"
cache_max_bytes = 1000000
""",
    )
    resolved = resolve({}, config_file=config)
    hub, ghcr = resolved.settings.upstreams
    assert (hub.cache_max_bytes, hub.cache_max_age_seconds) == (50 * 1024**3, 604800.0)
    assert (ghcr.cache_max_bytes, ghcr.cache_max_age_seconds) == (1_000_000, None)
    line = next(x for x in describe(resolved).splitlines() if x.startswith("upstreams = "))
    parsed = tomllib.loads(line.split("  #", 1)[0])["upstreams"]
    assert parsed[0]["cache_max_bytes"] == 50 * 1024**3
    assert "cache_max_age_seconds" not in parsed[1]


def test_upstreams_from_the_environment() -> None:
    env = {"REGISTRYD_UPSTREAMS": '[{namespace = "quay.io", url = "https://quay.io"}]'}
    (quay,) = resolve(env).settings.upstreams
    assert (quay.namespace, quay.url, quay.username) == ("quay.io", "https://quay.io", None)
    assert resolve({"REGISTRYD_UPSTREAMS": ""}).settings.upstreams == ()


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        ('namespace = "alice"\nurl = "https://x.io"', "could be an account's"),
        ('namespace = "library"\nurl = "https://x.io"', "could be an account's"),
        ('namespace = "a/b.io"\nurl = "https://x.io"', "one path component"),
        ('namespace = "Docker.io"\nurl = "https://x.io"', "one path component"),
        ('url = "https://x.io"', "one path component"),
        ('namespace = "x.io"\nurl = "ftp://x.io"', "url must be"),
        ('namespace = "x.io"\nurl = "https://x.io/v2/"', "url must be"),
        ('namespace = "x.io"\nurl = "https://u:p@x.io"', "credentials apart"),
        ('namespace = "x.io"\nurl = "https://x.io"\nusername = "u"', "set together"),
        ('namespace = "x.io"\nurl = "https://x.io"\npassword = "p"', "set together"),
        ('namespace = "x.io"\nurl = "https://x.io"\npasword = "p"', "unknown key 'pasword'"),
        ('namespace = "x.io"\nurl = "https://x.io"\ntag_ttl_seconds = 0', "positive number"),
        ('namespace = "x.io"\nurl = "https://x.io"\ntag_ttl_seconds = "5"', "positive number"),
        ('namespace = "x.io"\nurl = "https://x.io"\nlibrary_prefix = 1', "true or false"),
        ('namespace = "x.io"\nurl = "https://x.io"\ncache_max_bytes = 0', "positive size"),
        ('namespace = "x.io"\nurl = "https://x.io"\ncache_max_bytes = "lots"', "not a size"),
        ('namespace = "x.io"\nurl = "https://x.io"\ncache_max_bytes = 1.5', "positive size"),
        ('namespace = "x.io"\nurl = "https://x.io"\ncache_max_age_seconds = 0', "positive"),
        (
            'namespace = "x.io"\nurl = "https://x.io"\npassword_file = "/nonexistent/pw"\n'
            'username = "u"',
            "password_file",
        ),
    ],
)
def test_bad_upstreams_are_named(tmp_path: Path, table: str, complaint: str) -> None:
    config = write(tmp_path, f"[[upstreams]]\n{table}\n")
    with pytest.raises(ConfigError, match=complaint) as caught:
        resolve({}, config_file=config)
    assert f"{config}: upstreams[0]" in str(caught.value)


def test_two_upstreams_one_namespace_or_two_unprefixed(tmp_path: Path) -> None:
    one = 'namespace = "x.io"\nurl = "https://x.io"'
    config = write(tmp_path, f"[[upstreams]]\n{one}\n[[upstreams]]\n{one}\n")
    with pytest.raises(ConfigError, match="share a namespace"):
        resolve({}, config_file=config)
    both = (
        '[[upstreams]]\nnamespace = "a.io"\nurl = "https://a.io"\nserve_unprefixed = true\n'
        '[[upstreams]]\nnamespace = "b.io"\nurl = "https://b.io"\nserve_unprefixed = true\n'
    )
    with pytest.raises(ConfigError, match="at most one"):
        resolve({}, config_file=write(tmp_path, both))


def test_not_a_list() -> None:
    with pytest.raises(ConfigError, match="REGISTRYD_UPSTREAMS"):
        resolve({"REGISTRYD_UPSTREAMS": "{namespace = 1"})
    with pytest.raises(ConfigError, match="list of"):
        resolve({"REGISTRYD_UPSTREAMS": '"docker.io"'})
