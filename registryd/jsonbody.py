"""The one JSON parser for request bodies: strict, bounded, and safe to store.

Every endpoint that reads JSON from a client goes through ``parse``. Beyond
``json.loads`` it refuses what would otherwise surface later as a 500: nesting
deep enough to exhaust the stack, ``NaN``/``Infinity`` and numbers too large for
a double (not JSON, or not storable in ``jsonb``), and strings PostgreSQL or
UTF-8 cannot hold (NUL and lone surrogates). Body size is bounded before this,
by ``read_body``'s limit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

# Real manifests and image configs nest a handful of levels; 64 leaves ample room.
MAX_DEPTH = 64
# Only these escapes can produce NUL or a lone surrogate (raw NUL bytes and
# undecodable UTF-8 already fail json.loads), so most bodies skip the string walk.
_SUSPECT_ESCAPE_RE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
# The reason for anything json.loads itself refuses; v1 clients see it verbatim.
SYNTAX_ERROR = "Invalid JSON"


class JsonInvalid(ValueError):
    """Why a body is not acceptable JSON; callers turn it into their protocol's error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def storable_text(text: str) -> bool:
    """Whether ``text`` can be stored and echoed: no NUL, no lone surrogate."""
    return _UNSTORABLE_RE.search(text) is None


def _no_constant(name: str) -> Any:
    raise JsonInvalid(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: valid JSON, yet Infinity to Python and jsonb
        raise JsonInvalid(f"{text} is out of range for a JSON number")
    return value


def _check(value: Any, check_text: bool) -> None:
    """Walk iteratively (never recursively): bound the depth, vet strings if needed."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise JsonInvalid(f"JSON nested deeper than {MAX_DEPTH} levels")
            for key, child in item.items():
                if check_text and not storable_text(key):
                    raise JsonInvalid("JSON string contains NUL or a lone surrogate")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise JsonInvalid(f"JSON nested deeper than {MAX_DEPTH} levels")
            stack.extend((child, depth + 1) for child in item)
        elif check_text and isinstance(item, str) and not storable_text(item):
            raise JsonInvalid("JSON string contains NUL or a lone surrogate")


def parse(body: bytes) -> Any:
    """The JSON value of a UTF-8 ``body``; raise JsonInvalid naming what is wrong."""
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except JsonInvalid:
        raise
    except RecursionError:
        raise JsonInvalid(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # JSONDecodeError, bad UTF-8, integers too long to convert
        raise JsonInvalid(SYNTAX_ERROR) from None
    check_text = _SUSPECT_ESCAPE_RE.search(body) is not None
    # Fewer brackets than the depth limit cannot nest past it: most bodies skip the walk.
    if check_text or body.count(b"[") + body.count(b"{") > MAX_DEPTH:
        _check(value, check_text)
    return value


def parse_or_raise(
    body: bytes, error: Callable[[str], Exception], *, syntax_reason: str = SYNTAX_ERROR
) -> Any:
    """``parse``, raising ``error(reason)`` instead of JsonInvalid: each caller's domain error.

    ``syntax_reason`` replaces the reason for bytes that are not JSON at all (protocols word
    that case differently on the wire).
    """
    try:
        return parse(body)
    except JsonInvalid as exc:
        reason = syntax_reason if exc.reason == SYNTAX_ERROR else exc.reason
        raise error(reason) from None


def stored_object(body: bytes | None) -> dict[str, Any] | None:
    """The JSON object in stored bytes shown for display (a config, an index), or None when
    they are absent, not JSON, or not an object. Never raises: what a client once pushed
    must not break a page. Unlike ``parse`` it keeps NUL and NaN (display only)."""
    if body is None:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # also bad UTF-8; RecursionError: absurd nesting
        return None
    return data if isinstance(data, dict) else None
