"""The strict JSON parser every request body goes through."""

from __future__ import annotations

import pytest

from registryd.jsonbody import (
    MAX_DEPTH,
    JsonInvalid,
    parse,
    parse_or_raise,
    storable_text,
    stored_object,
)


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


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2", "not JSON at all"),  # the caller's wording for a syntax error
        (b"[NaN]", "NaN is not a JSON number"),  # other reasons pass through
    ],
)
def test_parse_or_raise_turns_refusals_into_the_callers_error(body: bytes, reason: str) -> None:
    with pytest.raises(_Refused) as caught:
        parse_or_raise(body, _Refused, syntax_reason="not JSON at all")
    assert caught.value.reason == reason
    assert parse_or_raise(b'{"a": [1]}', _Refused) == {"a": [1]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),
        (b"", None),
        (b"\xff", None),
        (b"[1]", None),  # JSON, not an object
        (b"[" * 100_000, None),  # nesting that would exhaust the stack
        (b'{"a": "\\u0000"}', {"a": "\x00"}),  # shown as pushed
    ],
)
def test_stored_object_never_raises(body: bytes | None, expected: object) -> None:
    assert stored_object(body) == expected
