"""SQL of user accounts (``users``)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from registryd.db.conn import Conn


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: int
    username: str
    email: str | None
    password_hash: str
    is_admin: bool
    is_active: bool


def _user(row: asyncpg.Record) -> UserRow:
    return UserRow(
        user_id=row["user_id"],
        username=row["username"],
        email=row["email"],
        password_hash=row["password_hash"],
        is_admin=row["is_admin"],
        is_active=row["is_active"],
    )


async def fetch_user(conn: Conn, username: str) -> UserRow | None:
    row = await conn.fetchrow("SELECT * FROM users WHERE username = $1", username)
    return _user(row) if row is not None else None


async def insert_user(
    conn: Conn, username: str, email: str | None, password_hash: str, is_admin: bool
) -> UserRow | None:
    """Create a user; None when the username or e-mail address is taken.

    Runs in its own (sub)transaction, so a conflict leaves a caller's transaction usable.
    """
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                """
                INSERT INTO users (username, email, password_hash, is_admin)
                VALUES ($1, $2, $3, $4)
                RETURNING *
                """,
                username,
                email,
                password_hash,
                is_admin,
            )
    except asyncpg.UniqueViolationError:
        return None
    assert row is not None
    return _user(row)


async def update_user(
    conn: Conn,
    username: str,
    *,
    email: str | None = None,
    password_hash: str | None = None,
    is_admin: bool | None = None,
) -> bool:
    """Change the given fields; False when the e-mail is taken by another account."""
    try:
        async with conn.transaction():  # a savepoint inside a caller's transaction
            await conn.execute(
                """
                UPDATE users SET email = COALESCE($2, email),
                                 password_hash = COALESCE($3, password_hash),
                                 is_admin = COALESCE($4, is_admin),
                                 updated_at = now()
                WHERE username = $1
                """,
                username,
                email,
                password_hash,
                is_admin,
            )
    except asyncpg.UniqueViolationError:
        return False
    return True
