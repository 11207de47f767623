"""Form posts: CSRF first, then the fields, each bounded."""

from __future__ import annotations

from aiohttp import web

from registryd.errors import AccessDenied, RequestInvalid
from registryd.ui import session

# Notices a redirect may ask a page to show: fixed texts, so a link cannot put words there.
NOTICES = {
    "tag-deleted": "The tag was deleted.",
    "manifest-deleted": "The manifest was deleted, with its tags.",
    "made-private": "The repository is now private.",
    "made-public": "The repository is now public.",
    "user-created": "The account was created.",
    "user-changed": "The account was changed.",
    "signed-out": "You are signed out.",
}


def notice(request: web.Request) -> str | None:
    return NOTICES.get(request.query.get("notice", ""))


async def checked_form(request: web.Request) -> dict[str, str]:
    """The posted fields; AccessDenied unless the CSRF token matches the browser's cookie."""
    data = await request.post()
    fields = {k: v for k, v in data.items() if isinstance(v, str)}
    if not session.csrf_ok(request, fields.get(session.CSRF_FIELD, "")):
        raise AccessDenied("The form expired or did not come from this site; reload and retry")
    return fields


def field(fields: dict[str, str], name: str, max_chars: int = 256) -> str:
    value = fields.get(name, "")
    if not value or len(value) > max_chars:
        raise RequestInvalid(f"Missing or too long: {name}")
    return value


def see_other(location: str) -> web.Response:
    """After a post: GET ``location`` (a UI path), so a reload never posts again."""
    return web.Response(status=303, headers={"Location": location})
