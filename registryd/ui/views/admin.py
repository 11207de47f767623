"""Administration: accounts (create, disable, make admin), storage per repository, the
last garbage collection runs and the mirrored upstreams' state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from registryd.db import gc_queries, ui_queries, user_queries
from registryd.db.ui_queries import Viewer
from registryd.domain.passwords import hash_password
from registryd.domain.users import validate_email, validate_password, validate_username
from registryd.errors import RequestInvalid, UserInvalid, UserUnknown
from registryd.keys import SERVICES
from registryd.mirror.service import MIRROR
from registryd.ui import session
from registryd.ui.access import require_admin
from registryd.ui.forms import checked_form, notice, see_other
from registryd.ui.paging import Paging, pager
from registryd.ui.render import page

# What the buttons on the users page may change, as (is_active, is_admin).
_CHANGES = {
    "disable": (False, None),
    "enable": (True, None),
    "make-admin": (None, True),
    "revoke-admin": (None, False),
}


async def users_page(
    request: web.Request, *, status: int = 200, error: str | None = None
) -> web.Response:
    identity = await session.viewer(request)
    require_admin(request, identity)
    paging = Paging.of(request)
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        total, rows = await ui_queries.fetch_users_page(conn, paging.size, paging.offset)
    return await page(
        request,
        "admin_users.html",
        status=status,
        identity=identity,
        users=rows,
        pager=pager(request, paging, total),
        notice=notice(request),
        error=error,
    )


async def users(request: web.Request) -> web.Response:
    return await users_page(request)


async def create_user(request: web.Request) -> web.Response:
    fields = await checked_form(request)
    require_admin(request, await session.viewer(request))
    svc = request.config_dict[SERVICES]
    try:
        username = validate_username(fields.get("username", ""))
        password = validate_password(fields.get("password", ""))
        email = validate_email(fields.get("email", "").strip())
    except UserInvalid as exc:
        return await users_page(request, status=400, error=exc.reason)
    password_hash = await hash_password(password)
    async with svc.pool.acquire() as conn:
        created = await user_queries.insert_user(
            conn, username, email, password_hash, fields.get("is_admin") == "on"
        )
    if created is None:
        return await users_page(request, status=409, error="That username or e-mail is taken")
    return see_other("/ui/admin/users?notice=user-created")


async def change_user(request: web.Request) -> web.Response:
    fields = await checked_form(request)
    identity = await session.viewer(request)
    require_admin(request, identity)
    change = _CHANGES.get(fields.get("change", ""))
    if change is None:
        raise RequestInvalid("Unknown change")
    username = request.match_info["username"]
    if username == identity.username:
        # An admin locking himself out (or demoting himself) is almost always a slip.
        raise RequestInvalid("You cannot disable or demote your own account here")
    is_active, is_admin = change
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        if not await ui_queries.set_user_flags(
            conn, username, is_active=is_active, is_admin=is_admin
        ):
            raise UserUnknown()
    return see_other("/ui/admin/users?notice=user-changed")


async def storage(request: web.Request) -> web.Response:
    identity = await session.viewer(request)
    require_admin(request, identity)
    paging = Paging.of(request)
    everyone = Viewer(username=None, sees_everything=True, sees_public=True)
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        total, repos = await ui_queries.fetch_catalog_page(
            conn, everyone, "", None, True, paging.size, paging.offset
        )
    return await page(
        request,
        "admin_storage.html",
        identity=identity,
        repositories=repos,
        pager=pager(request, paging, total),
    )


@dataclass(frozen=True)
class UpstreamState:
    namespace: str
    url: str
    authenticated: bool
    tag_ttl_seconds: float
    last_ok: datetime | None
    last_error_at: datetime | None
    last_error: str | None


def _moment(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None


async def mirrors(request: web.Request) -> web.Response:
    """The mirrored upstreams and how this process last fared with each."""
    identity = await session.viewer(request)
    require_admin(request, identity)
    mirror = request.config_dict.get(MIRROR)
    states = []
    for upstream in request.config_dict[SERVICES].settings.upstreams:
        client = mirror.client(upstream) if mirror is not None else None
        error = client.last_error if client is not None else None
        states.append(
            UpstreamState(
                namespace=upstream.namespace,
                url=upstream.url,
                authenticated=upstream.username is not None,
                tag_ttl_seconds=upstream.tag_ttl_seconds,
                last_ok=_moment(client.last_ok if client is not None else None),
                last_error_at=_moment(error[0] if error is not None else None),
                last_error=error[1] if error is not None else None,
            )
        )
    return await page(request, "admin_mirrors.html", identity=identity, upstreams=states)


async def garbage_collection(request: web.Request) -> web.Response:
    """The last garbage collection runs, newest first (from every process and command)."""
    identity = await session.viewer(request)
    require_admin(request, identity)
    async with request.config_dict[SERVICES].pool.acquire() as conn:
        runs = await gc_queries.fetch_runs(conn, 50)
    settings = request.config_dict[SERVICES].settings
    return await page(
        request,
        "admin_gc.html",
        identity=identity,
        runs=runs,
        interval_seconds=settings.gc_interval_seconds,
    )
