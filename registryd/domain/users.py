"""Accounts (v1 spec §3.4, §5.12): sign-up, login checks, updates, the bootstrapped admin."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from registryd.access.identity import Identity
from registryd.db import user_queries
from registryd.domain.passwords import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    hash_password,
    verify_password,
)
from registryd.domain.services import Services
from registryd.errors import (
    AccessDenied,
    SignupDisabled,
    Unauthenticated,
    UserExists,
    UserInvalid,
    UserUnknown,
)
from registryd.names import LIBRARY_NAMESPACE

USERNAME_RE = re.compile(r"^[a-z0-9_]{4,30}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_MAX_EMAIL_CHARS = 254
# Names that would shadow a namespace the server gives meaning to.
RESERVED_USERNAMES = frozenset({LIBRARY_NAMESPACE})


def validate_username(username: Any) -> str:
    if not isinstance(username, str) or USERNAME_RE.fullmatch(username) is None:
        raise UserInvalid("Username must be 4 to 30 characters of a-z, 0-9 and _")
    if username in RESERVED_USERNAMES:
        raise UserInvalid(f"Username {username!r} is reserved")
    return username


def validate_password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise UserInvalid(f"Password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserInvalid(f"Password must be at most {MAX_PASSWORD_CHARS} characters")
    return password


def validate_email(email: Any) -> str | None:
    """An e-mail address, or None when absent or empty (docker >= 1.11 sends none)."""
    if email is None or email == "":
        return None
    if (
        not isinstance(email, str)
        or len(email) > _MAX_EMAIL_CHARS
        or not _EMAIL_RE.fullmatch(email)
    ):
        raise UserInvalid("Invalid email address")
    return email


async def sign_up(svc: Services, body: Any) -> None:
    """Create an account from a POST /v1/users body; raise UserExists or UserInvalid."""
    if not svc.settings.open_signup:
        raise SignupDisabled()
    if not isinstance(body, dict):
        raise UserInvalid("Invalid JSON: expected an object with username and password")
    username = body.get("username")
    if isinstance(username, str):
        async with svc.pool.acquire() as conn:
            if await user_queries.fetch_user(conn, username) is not None:
                raise UserExists()  # checked first: docker's login relies on this answer
    username = validate_username(username)
    password = validate_password(body.get("password"))
    email = validate_email(body.get("email"))
    password_hash = await hash_password(password)
    async with svc.pool.acquire() as conn:
        if await user_queries.insert_user(conn, username, email, password_hash, False) is None:
            raise UserExists()


async def authenticate(
    svc: Services,
    username: str,
    password: str,
    before_hashing: Callable[[], None] | None = None,
) -> Identity:
    """The identity behind Basic credentials; raise Unauthenticated, or AccessDenied if inactive.

    Unknown users and wrong passwords take the same time and give the same answer.
    ``before_hashing`` may refuse the attempt before the costly hash (see verify_password).
    """
    async with svc.pool.acquire() as conn:
        user = await user_queries.fetch_user(conn, username)
    ok = await verify_password(user.password_hash if user else None, password, before_hashing)
    if user is None or not ok:
        raise Unauthenticated("Wrong login/password")
    if not user.is_active:
        raise AccessDenied("Account is not Active")
    return Identity(user.username, user.is_admin)


async def update_account(svc: Services, caller: Identity, username: str, body: Any) -> None:
    """Change e-mail and/or password of ``username``: the user himself or an admin."""
    if caller.username != username and not caller.is_admin:
        raise AccessDenied("You may only change your own account")
    if not isinstance(body, dict) or not ({"email", "password"} & body.keys()):
        raise UserInvalid("Expected an object with email and/or password")
    email = validate_email(body.get("email"))
    password_hash = None
    if "password" in body:
        password_hash = await hash_password(validate_password(body["password"]))
    async with svc.pool.acquire() as conn:
        if await user_queries.fetch_user(conn, username) is None:
            raise UserUnknown()
        if not await user_queries.update_user(
            conn, username, email=email, password_hash=password_hash
        ):
            raise UserExists()


async def ensure_user(
    svc: Services, username: str, password: str, *, is_admin: bool, email: str | None = None
) -> bool:
    """Create the account, or reset its password (and admin flag); True if it was created.

    For operators (start-up admin bootstrap, ``registryd create-user``), not for clients.
    """
    username = validate_username(username)
    email = validate_email(email)
    password_hash = await hash_password(validate_password(password))
    async with svc.pool.acquire() as conn, conn.transaction():
        # Insert first: several workers bootstrapping the same admin at once must not fail.
        if (
            await user_queries.insert_user(conn, username, email, password_hash, is_admin)
            is not None
        ):
            return True
        if await user_queries.fetch_user(conn, username) is None:
            raise UserExists()  # the e-mail address belongs to another account
        if not await user_queries.update_user(
            conn, username, email=email, password_hash=password_hash, is_admin=is_admin
        ):
            raise UserExists()
        return False
