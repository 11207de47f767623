"""Retention rules, dry runs, and the settings that configure them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import asyncpg
import pytest

from registryd.config import ConfigError, RetentionRule, resolve
from registryd.domain.services import Services
from tests.conftest import Client
from tests.gc.conftest import age_everything, blob_rows, collect
from tests.support.content import sha256
from tests.support.images import random_bytes
from tests.support.v2client import V2Client


def with_rules(svc: Services, *rules: RetentionRule) -> Services:
    return dataclasses.replace(svc, settings=dataclasses.replace(svc.settings, retention=rules))


async def tags_of(v2: V2Client, name: str) -> list[str]:
    status, _, _ = await v2.call("GET", f"/v2/{name}/tags/list")
    assert status == 200
    async with v2.http.request("GET", f"/v2/{name}/tags/list") as resp:
        tags: list[str] = (await resp.json())["tags"]
    return tags


async def test_rules_keep_the_newest_and_matching_tags_and_a_dry_run_only_tells(
    client: Client, svc: Services, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    for i, tag in enumerate(["v1", "build-1", "build-2", "latest", "build-3", "build-4"]):
        await v2.push_image("ci/app", tag, [random_bytes(300, 100 + i)])
    await v2.push_image("prod/app", "build-1", [random_bytes(300, 200)])
    await age_everything(db)
    rules = (
        RetentionRule("ci/*", keep_last=2, keep_tags=("latest", "v*")),
        RetentionRule("*", keep_last=100),
    )
    before = await blob_rows(db)
    dry = await collect(with_rules(svc, *rules), dry_run=True)
    assert dry.tags == {"ci/*": ["ci/app:build-2", "ci/app:build-1"]}
    assert len(dry.manifests) == 2
    assert len(dry.blobs) == 2  # the two layers only those manifests used
    assert "would remove 2 manifest(s)" in dry.render()
    # Nothing changed, nothing is left locked.
    assert await blob_rows(db) == before
    assert sorted(await tags_of(v2, "ci/app")) == [
        "build-1",
        "build-2",
        "build-3",
        "build-4",
        "latest",
        "v1",
    ]

    real = await collect(with_rules(svc, *rules))
    assert real.tags == dry.tags
    assert sorted(real.manifests) == sorted(dry.manifests)
    assert sorted(real.blobs) == sorted(dry.blobs)
    assert real.bytes_freed == sum(size for _, size in dry.blobs)
    assert sorted(await tags_of(v2, "ci/app")) == ["build-3", "build-4", "latest", "v1"]
    assert await tags_of(v2, "prod/app") == ["build-1"]


async def test_a_dry_run_of_plain_garbage_removes_nothing(
    client: Client, svc: Services, db: asyncpg.Connection
) -> None:
    v2 = V2Client(client)
    digest = await v2.push_blob("alice/app", b"never referenced")
    await age_everything(db)
    dry = await collect(svc, dry_run=True)
    assert dry.blobs == [(digest, len(b"never referenced"))]
    assert dry.files_removed == 0
    status, _, _ = await v2.call("GET", f"/v2/alice/app/blobs/{digest}")
    assert status == 200
    assert [d for d, _ in (await collect(svc)).blobs] == [sha256(b"never referenced")]


def test_retention_rules_are_read_from_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "registryd.toml"
    config.write_text(
        "gc_untagged_seconds = 86400\n"
        '[[retention]]\nrepositories = "ci/*"\nkeep_last = 10\nkeep_tags = ["latest", "v*"]\n'
        '[[retention]]\nrepositories = "tmp/*"\n'
    )
    settings = resolve({}, config_file=config).settings
    assert settings.gc_untagged_seconds == 86400
    assert settings.retention == (
        RetentionRule("ci/*", 10, ("latest", "v*")),
        RetentionRule("tmp/*", 0, ()),
    )
    env = resolve({"REGISTRYD_RETENTION": '[{repositories = "a/*", keep_last = 1}]'}).settings
    assert env.retention == (RetentionRule("a/*", 1, ()),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[retention]]\nkeep_last = 1\n", "repositories"),
        ('[[retention]]\nrepositories = "a/*"\nkeep_last = -1\n', "keep_last"),
        ('[[retention]]\nrepositories = "a/*"\nkeep_tags = "latest"\n', "keep_tags"),
        ('[[retention]]\nrepositories = "a/*"\nkeep = 3\n', "unknown key 'keep'"),
        ("retention = 3\n", "array of tables"),
        ("gc_grace_seconds = -1\n", "gc_grace_seconds"),
        ("gc_max_seconds = 0\n", "gc_max_seconds"),
    ],
)
def test_bad_gc_settings_are_refused_by_name(tmp_path: Path, body: str, message: str) -> None:
    config = tmp_path / "registryd.toml"
    config.write_text(body)
    with pytest.raises(ConfigError, match=message):
        resolve({}, config_file=config)
