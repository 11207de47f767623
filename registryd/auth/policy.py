"""The single access decision every endpoint goes through."""

from __future__ import annotations

import enum

from aiohttp import web

from registryd.names import RepositoryName


class Action(enum.Enum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"


async def authorize(
    request: web.Request, action: Action, repository: RepositoryName | None
) -> None:
    """Allow the request or raise an access error.

    ``repository`` is None for ``/v1/images/...``, whose repository comes from
    the caller's token. Until users and tokens exist every request is allowed.
    """
    # TODO(#3): users, tokens and per-repository permissions decide here.
    del request, action, repository
