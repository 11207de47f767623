from __future__ import annotations

import pytest

from registryd.http.streaming import ByteRange, RangeNotSatisfiable, parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=10-10", ByteRange(10, 10)),  # one byte is a valid range
        ("bytes=500-", ByteRange(500, 999)),
        ("bytes=500-1000", ByteRange(500, 999)),  # docker's end = size (off by one)
        ("bytes=500-99999", ByteRange(500, 999)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=0-1,5-6", None),  # multi-range: served whole
        ("items=0-1", None),
        ("bytes=abc", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    # An end before the start selects nothing: 416 (RFC 9110, OCI conformance "range 500-0").
    ["bytes=1000-1000", "bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=9-3", "bytes=500-0"],
)
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, SIZE)


def test_any_range_of_an_empty_blob_is_unsatisfiable() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)
