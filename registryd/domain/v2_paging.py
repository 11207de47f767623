"""Pages of the v2 list endpoints (tags, catalog): the ``n`` parameter and what a page holds
(spec end-8a, end-8b)."""

from __future__ import annotations

from dataclasses import dataclass

from registryd.errors import PaginationNumberInvalid


def parse_page_size(text: str | None, maximum: int) -> int | None:
    """The ``n`` query parameter: None when absent; raise PaginationNumberInvalid."""
    if text is None:
        return None
    if not text.isdigit() or len(text) > 9:
        raise PaginationNumberInvalid(text)
    return min(int(text), maximum)


@dataclass(frozen=True)
class Page:
    items: list[str]
    more: bool  # another page follows
    last: str | None = None  # where the next page starts after (default: the last item)
