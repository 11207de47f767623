from __future__ import annotations

import pytest

from registryd.errors import ImageIdInvalid, RepositoryNameInvalid, TagNameInvalid
from registryd.names import RepositoryName, parse_image_id, parse_tag

GOOD_ID = "a" * 64


def test_image_id_is_64_lowercase_hex() -> None:
    assert parse_image_id(GOOD_ID) == GOOD_ID


@pytest.mark.parametrize(
    "text",
    ["", "a" * 63, "a" * 65, "A" * 64, "g" * 64, "a" * 16, "../" + "a" * 61, "a" * 63 + "\n"],
)
def test_bad_image_ids(text: str) -> None:
    with pytest.raises(ImageIdInvalid):
        parse_image_id(text)


def test_one_segment_names_are_library() -> None:
    assert RepositoryName.parse(None, "ubuntu") == RepositoryName("library", "ubuntu")
    assert str(RepositoryName.parse("alice", "my-app.v2_x")) == "alice/my-app.v2_x"


@pytest.mark.parametrize(
    ("namespace", "repository"),
    [
        ("alice", "Upper"),
        ("alice", "-leading"),
        ("alice", ".leading"),
        ("alice", "has space"),
        ("alice", "dollar$"),
        ("alice", "x" * 256),
        ("alice", "tags"),
        ("alice", "images"),
        ("abc", "app"),  # namespaces are usernames: 4-30 characters
        ("Alice", "app"),
        ("a" * 31, "app"),
        ("ali-ce", "app"),
        ("..", "app"),
    ],
)
def test_bad_repository_names(namespace: str, repository: str) -> None:
    with pytest.raises(RepositoryNameInvalid):
        RepositoryName.parse(namespace, repository)


@pytest.mark.parametrize("tag", ["l", "1", "_valid", "x" * 128, "v1.2-rc_3", "LATEST"])
def test_good_tags(tag: str) -> None:
    assert parse_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", ".fail", "-fail", "$<invalid>", "x" * 129, "a/b", "é"])
def test_bad_tags(tag: str) -> None:
    with pytest.raises(TagNameInvalid):
        parse_tag(tag)
