"""The s3 storage settings: parsed, validated, and naming the variable when wrong."""

from __future__ import annotations

import pytest

from registryd.config import ConfigError, Settings


def test_s3_settings_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "REGISTRYD_STORAGE": "S3",
            "REGISTRYD_S3_BUCKET": "my-registry.blobs",
            "REGISTRYD_S3_PREFIX": "/team/registry/",
            "REGISTRYD_S3_REGION": "eu-west-1",
            "REGISTRYD_S3_ENDPOINT_URL": "http://minio:9000/",
            "REGISTRYD_S3_PATH_STYLE": "true",
            "REGISTRYD_S3_REDIRECT": "false",
            "REGISTRYD_S3_PART_BYTES": "64MiB",
        }
    )
    assert settings.storage == "s3"
    assert settings.s3_bucket == "my-registry.blobs"
    assert settings.s3_prefix == "team/registry/"
    assert settings.s3_region == "eu-west-1"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_path_style is True
    assert settings.s3_redirect is False
    assert settings.s3_part_bytes == 64 * 1024**2


def test_defaults() -> None:
    settings = Settings()
    assert (settings.storage, settings.s3_prefix, settings.s3_endpoint_url) == (
        "filesystem",
        "",
        "",
    )
    assert settings.s3_redirect is True
    assert settings.s3_path_style is False
    assert settings.s3_part_bytes == 16 * 1024**2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REGISTRYD_STORAGE", "gcs"),
        ("REGISTRYD_S3_BUCKET", "Upper_Case"),
        ("REGISTRYD_S3_BUCKET", "ab"),
        ("REGISTRYD_S3_BUCKET", "a..b"),
        ("REGISTRYD_S3_PREFIX", "a//b"),
        ("REGISTRYD_S3_PREFIX", "a/../b"),
        ("REGISTRYD_S3_REGION", "us east"),
        ("REGISTRYD_S3_ENDPOINT_URL", "minio:9000"),
        ("REGISTRYD_S3_ENDPOINT_URL", "http://minio:9000/path"),
        ("REGISTRYD_S3_PART_BYTES", "4MiB"),
        ("REGISTRYD_S3_PART_BYTES", "6GiB"),
        ("REGISTRYD_S3_REDIRECT", "maybe"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_s3_storage_needs_a_bucket() -> None:
    with pytest.raises(ConfigError, match="REGISTRYD_S3_BUCKET"):
        Settings.from_env({"REGISTRYD_STORAGE": "s3"}).validate()
