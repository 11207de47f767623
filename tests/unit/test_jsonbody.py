"""The strict JSON parser every request body goes through."""

from __future__ import annotations

import pytest

from registryd.jsonbody import MAX_DEPTH, JsonInvalid, parse, storable_text


def test_depth_limit_is_exact() -> None:
    deepest = parse(("[" * MAX_DEPTH + "]" * MAX_DEPTH).encode())
    for _ in range(MAX_DEPTH - 1):
        (deepest,) = deepest
    assert deepest == []
    with pytest.raises(JsonInvalid, match="nested deeper than 64"):
        parse(("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode())
    # Many brackets side by side are not depth.
    assert parse(b"[" + b",".join([b"[[1]]"] * 1000) + b"]")[999] == [[1]]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2", "Invalid JSON"),
        (b"\xff", "Invalid JSON"),
        (b"1" * 5000, "Invalid JSON"),  # an integer too long to convert
        (b"[NaN]", "NaN is not a JSON number"),
        (b"[1e999]", "1e999 is out of range for a JSON number"),
        (b'["\\u0000"]', "JSON string contains NUL or a lone surrogate"),
        (b'{"\\udbff": 1}', "JSON string contains NUL or a lone surrogate"),
    ],
)
def test_refusals_name_their_reason(body: bytes, reason: str) -> None:
    with pytest.raises(JsonInvalid) as caught:
        parse(body)
    assert caught.value.reason == reason


def test_valid_surrogate_pairs_and_escaped_backslashes_pass() -> None:
    assert parse(b'["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert parse(b'["\\\\u0000"]') == ["\\u0000"]  # a literal backslash, not a NUL
    assert storable_text("plain")
    assert not storable_text("a\x00")
    assert not storable_text("\ud800")
