"""The TOML file, precedence, sources and masking of ``registryd config check``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from registryd.config import ConfigError, resolve, setting_names
from registryd.ops.config_check import describe, mask_url, masked


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registryd.toml"
    path.write_text(text)
    return path


def test_precedence_default_file_env_flag(tmp_path: Path) -> None:
    config = write(tmp_path, 'port = 6000\nhost = "0.0.0.0"\nlog_level = "debug"\n')
    resolved = resolve(
        {"REGISTRYD_PORT": "7000", "REGISTRYD_LOG_LEVEL": "warning"},
        config_file=config,
        flags={"log_level": "error", "host": None},
    )
    s = resolved.settings
    assert (s.host, s.port, s.log_level, s.max_json_bytes) == (
        "0.0.0.0",
        7000,
        "error",
        4 * 1024**2,
    )
    assert resolved.sources["host"] == f"file {config}"
    assert resolved.sources["port"] == "env REGISTRYD_PORT"
    assert resolved.sources["log_level"] == "flag --log-level"
    assert resolved.sources["max_json_bytes"] == "default"


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = write(tmp_path, 'max_layer_bytes = "2GiB"\ndrain_timeout_seconds = 7.5\n')
    settings = resolve({"REGISTRYD_CONFIG": str(config)}).settings
    assert settings.max_layer_bytes == 2 * 1024**3
    assert settings.drain_timeout_seconds == 7.5


def test_toml_booleans_are_accepted(tmp_path: Path) -> None:
    config = write(tmp_path, "anonymous_pull = false\n")
    assert resolve({}, config_file=config).settings.anonymous_pull is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 5000\n", "prot: unknown setting"),
        ("port = 99999\n", "port='99999'"),
        ('drain_timeout_seconds = "soon"\n', "drain_timeout_seconds"),
        ("port = [1]\n", "port: must be"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_bad_file_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    config = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(str(config))) as info:
        resolve({}, config_file=config)
    assert message in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        resolve({}, config_file=tmp_path / "nope.toml")


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--drain-timeout-seconds"):
        resolve({}, flags={"drain_timeout_seconds": "-1"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REGISTRYD_LOG_FORMAT", "xml"),
        ("REGISTRYD_DRAIN_TIMEOUT_SECONDS", "nan"),
        ("REGISTRYD_DRAIN_DELAY_SECONDS", "-1"),
        ("REGISTRYD_READINESS_TIMEOUT_SECONDS", "inf"),
    ],
)
def test_bad_ops_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        resolve({variable: value})


def test_unknown_variables_are_reported() -> None:
    resolved = resolve({"REGISTRYD_PROT": "1", "REGISTRYD_CONFIG": "", "OTHER": "x"})
    assert resolved.unknown_env == ["REGISTRYD_PROT"]


def test_masking() -> None:
    assert mask_url("postgresql://u:s3cret@db:5432/r") == "postgresql://u:***@db:5432/r"
    assert mask_url("postgresql://u@db/r?password=s3cret&sslmode=require") == (
        "postgresql://u@db/r?password=***&sslmode=require"
    )
    assert mask_url("postgresql://u@db/r") == "postgresql://u@db/r"
    assert masked("token_secret", "x" * 40) == "***"
    assert masked("admin_password", "hunter2") == "***"
    assert masked("admin_user", "root") == "root"
    assert masked("token_secret", None) is None


def test_describe_masks_every_secret() -> None:
    resolved = resolve(
        {
            "REGISTRYD_DATABASE_URL": "postgresql://reg:pg-pass@db/reg",
            "REGISTRYD_TOKEN_SECRET": "t" * 40,
            "REGISTRYD_ADMIN_USER": "root",
            "REGISTRYD_ADMIN_PASSWORD": "admin-pass",
        }
    )
    text = describe(resolved)
    for secret in ("pg-pass", "t" * 40, "admin-pass"):
        assert secret not in text
    assert 'database_url = "postgresql://reg:***@db/reg"  # env REGISTRYD_DATABASE_URL' in text
    assert 'admin_user = "root"' in text
    assert "port = 5000  # default" in text


def test_readme_table_lists_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(" `") for line in readme.splitlines() if line.startswith("| `")
    }
    assert set(setting_names()) <= rows
