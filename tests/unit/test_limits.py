"""``serve`` raises the soft open-files limit: connections, shared blob files and uploads each
hold a descriptor."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from registryd.server import raise_open_files_limit


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 256:
        pytest.fail(f"hard open-files limit {hard} is too low to test with")
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_soft_limit_is_raised_to_the_hard_one(low_soft_limit: int) -> None:
    assert raise_open_files_limit() == low_soft_limit
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (low_soft_limit, low_soft_limit)
