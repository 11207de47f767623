"""Page numbers from query strings: bad values fall back to the first page, never fail."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

PAGE_SIZE = 50
_MAX_PAGE = 1_000_000
_MAX_TERM_CHARS = 200


def term(request: web.Request) -> str:
    """The search box's text, trimmed and bounded."""
    return request.query.get("q", "").strip()[:_MAX_TERM_CHARS]


@dataclass(frozen=True)
class Paging:
    number: int
    size: int = PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @classmethod
    def of(cls, request: web.Request) -> Paging:
        text = request.query.get("page", "1")
        number = int(text) if text.isdigit() and len(text) < 8 else 1
        return cls(min(max(number, 1), _MAX_PAGE))


@dataclass(frozen=True)
class Pager:
    """What a page's footer needs: where we are and the links around it."""

    number: int
    pages: int
    total: int
    previous_url: str | None
    next_url: str | None


def pager(request: web.Request, paging: Paging, total: int) -> Pager:
    pages = max(1, -(-total // paging.size))

    def url(number: int) -> str:
        query = {k: v for k, v in request.query.items() if k != "page"}
        query["page"] = str(number)
        return f"{request.rel_url.raw_path}?{urlencode(query)}"

    return Pager(
        number=paging.number,
        pages=pages,
        total=total,
        previous_url=url(paging.number - 1) if paging.number > 1 else None,
        next_url=url(paging.number + 1) if paging.number < pages else None,
    )
