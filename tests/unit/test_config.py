from __future__ import annotations

from pathlib import Path

import pytest

from registryd.config import ConfigError, Settings, parse_size_bytes


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url is None  # the embedded default
    assert settings.port == 5000


def test_environment_is_parsed() -> None:
    settings = Settings.from_env(
        {
            "REGISTRYD_PORT": "6000",
            "REGISTRYD_DATA_DIR": "/srv/registry",
            "REGISTRYD_DATABASE_URL": "postgresql://u@db/registry",
            "REGISTRYD_MAX_LAYER_BYTES": "2GiB",
            "REGISTRYD_LOG_LEVEL": "WARNING",
        }
    )
    assert settings.port == 6000
    assert settings.data_dir == Path("/srv/registry")
    assert settings.database_url == "postgresql://u@db/registry"
    assert settings.max_layer_bytes == 2 * 1024**3
    assert settings.log_level == "warning"


def test_flags_override_environment() -> None:
    settings = Settings.from_env({"REGISTRYD_PORT": "6000"}, port=7000, host=None)
    assert settings.port == 7000
    assert settings.host == "127.0.0.1"


def test_empty_database_url_means_embedded() -> None:
    assert Settings.from_env({"REGISTRYD_DATABASE_URL": ""}).database_url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REGISTRYD_PORT", "http"),
        ("REGISTRYD_PORT", "70000"),
        ("REGISTRYD_MAX_LAYER_BYTES", "ten"),
        ("REGISTRYD_MAX_LAYER_BYTES", "10 parsecs"),
        ("REGISTRYD_DATABASE_URL", "mysql://db"),
        ("REGISTRYD_LOG_LEVEL", "chatty"),
        ("REGISTRYD_DB_POOL_MAX_SIZE", "0"),
        ("REGISTRYD_STALE_UPLOAD_SECONDS", "-1"),
        ("REGISTRYD_HOST", " "),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_inconsistent_pool_sizes_are_refused() -> None:
    with pytest.raises(ConfigError, match="REGISTRYD_DB_POOL_MIN_SIZE"):
        Settings.from_env({"REGISTRYD_DB_POOL_MIN_SIZE": "10", "REGISTRYD_DB_POOL_MAX_SIZE": "5"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("512", 512), ("1k", 1000), ("64MiB", 64 * 1024**2), ("10 GB", 10 * 1000**3)],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size_bytes(text) == expected
