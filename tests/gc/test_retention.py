"""Retention rules, dry runs, and the settings that configure them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import asyncpg
import pytest

from registryd.config import ConfigError, RetentionRule, Settings, resolve
from registryd.domain.services import Services
from tests.conftest import Client
from tests.gc.conftest import age_everything, blob_rows, collect, stored
from tests.support.content import sha256
from tests.support.images import V1Image, make_image, random_bytes
from tests.support.v1client import V1Client
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
        ("gc_max_deletes_per_second = -5\n", "gc_max_deletes_per_second"),
    ],
)
def test_bad_gc_settings_are_refused_by_name(tmp_path: Path, body: str, message: str) -> None:
    config = tmp_path / "registryd.toml"
    config.write_text(body)
    with pytest.raises(ConfigError, match=message):
        resolve({}, config_file=config)


async def declare(v1: V1Client, repository: str, images: list[V1Image]) -> None:
    """What docker 1.x does first: declare the repository's image list."""
    status, body, _ = await v1.call(
        "PUT",
        f"/v1/repositories/{repository}/",
        data=json.dumps([{"id": i.image_id} for i in images]),
    )
    assert status in (200, 201), body


async def test_rules_rank_v1_and_v2_tags_together_and_free_what_only_old_v1_tags_kept(
    client: Client, svc: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    v1, v2 = V1Client(client), V2Client(client)
    base = make_image("retention-base", random_bytes(700, 500))
    tops = {
        tag: make_image(f"retention-{tag}", random_bytes(700, 501 + i), parent=base.image_id)
        for i, tag in enumerate(["build-1", "build-2", "latest", "build-3"])
    }
    for tag in ("build-1", "build-2"):
        await declare(v1, "ci_team/app", [base, tops[tag]])
        await v1.push("ci_team/app", tag, [base, tops[tag]])
    await v2.push_image("ci_team/app", "build-5", [random_bytes(300, 510)])  # a v2 push between
    for tag in ("latest", "build-3"):
        await declare(v1, "ci_team/app", [base, tops[tag]])
        await v1.push("ci_team/app", tag, [base, tops[tag]])
    await declare(v1, "prod_team/app", [tops["build-2"]])  # another repository still lists it
    await age_everything(db)
    rules = (RetentionRule("ci_*/*", keep_last=2, keep_tags=("latest",)),)

    dry = await collect(with_rules(svc, *rules), dry_run=True)
    # Newest first: build-3 and latest kept; build-5 (v2), build-2 and build-1 (v1) go.
    assert dry.tags == {
        "ci_*/*": ["ci_team/app:build-5", "ci_team/app:build-2 (v1)", "ci_team/app:build-1 (v1)"]
    }
    assert dry.v1_images == [tops["build-1"].image_id]
    assert len(dry.manifests) == 1
    assert await db.fetchval("SELECT count(*) FROM v1_tags") == 4  # a dry run only tells

    real = await collect(with_rules(svc, *rules))
    assert real.tags == dry.tags
    assert real.v1_images == [tops["build-1"].image_id]
    assert sha256(tops["build-1"].layer) in [d for d, _ in real.blobs]
    assert not stored(settings, sha256(tops["build-1"].layer))
    status, body, _ = await v1.call("GET", "/v1/repositories/ci_team/app/tags")
    assert status == 200
    assert sorted(json.loads(body)) == ["build-3", "latest"]
    status, body, _ = await v1.call("GET", "/v1/repositories/ci_team/app/images")
    assert status == 200
    listed = {i["id"] for i in json.loads(body)}
    assert listed == {base.image_id, tops["latest"].image_id, tops["build-3"].image_id}
    for tag in ("latest", "build-3"):  # what is still tagged pulls completely
        pulled = await v1.pull("ci_team/app", tag)
        assert [layer for _, _, layer in pulled] == [base.layer, tops[tag].layer]
    # Declared in prod_team/app, build-2's image stays, with its base.
    status, _, _ = await v1.call("GET", f"/v1/images/{tops['build-2'].image_id}/layer")
    assert status == 200
    assert await tags_of(v2, "ci_team/app") == []
