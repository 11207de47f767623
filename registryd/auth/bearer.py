"""Docker registry bearer tokens for the v2 API: short-lived HS256 JWTs.

The token endpoint signs one for the scopes a caller asked for, cut down to
what the policy allows; the registry accepts it only with our algorithm,
issuer and audience, unexpired, and for the repositories and actions it
lists. The key is the server's token secret, so replicas accept each other's.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from registryd.access.decision import V2_SCOPE_ACTIONS
from registryd.access.identity import Grant
from registryd.errors import RepositoryNameInvalid, Unauthenticated
from registryd.names import RepositoryName

ALGORITHM = "HS256"
ISSUER = "registryd"
# The "service" of the WWW-Authenticate challenge and the tokens' audience.
SERVICE = "registryd"
TOKEN_TTL_SECONDS = 300


@dataclass(frozen=True, slots=True)
class ScopeRequest:
    """``repository:<name>:<actions>`` as sent to the token endpoint."""

    repository: RepositoryName
    name: str  # as the client spelled it; echoed back in the token
    actions: frozenset[str]


def parse_scope(text: str) -> ScopeRequest | None:
    """A repository scope, or None for other resource types and malformed ones."""
    resource_type, _, rest = text.partition(":")
    name, _, actions = rest.rpartition(":")
    if resource_type != "repository" or not name:
        return None
    try:
        repository = RepositoryName.parse_oci(name)
    except RepositoryNameInvalid:
        return None
    wanted = {a for a in actions.split(",") if a}
    if "*" in wanted:
        wanted = set(V2_SCOPE_ACTIONS)
    return ScopeRequest(repository, name, frozenset(wanted & set(V2_SCOPE_ACTIONS)))


def issue(
    secret: bytes, username: str | None, access: list[tuple[str, list[str]]], now: float
) -> str:
    """A signed token granting ``access`` ([(name, actions)]) to ``username`` (None: anonymous)."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": username or "",
        "aud": SERVICE,
        "iat": int(now),
        "nbf": int(now) - 1,
        "exp": int(now) + TOKEN_TTL_SECONDS,
        "jti": secrets.token_hex(12),
        "access": [
            {"type": "repository", "name": name, "actions": actions} for name, actions in access
        ],
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


Verified = tuple[str, list[Grant], frozenset[RepositoryName]]


def verify(secret: bytes, token: str, now: float | None = None) -> Verified:
    """The subject, grants and scoped repositories of a valid token; raise Unauthenticated.

    (``verify_until`` with the expiry left out.)
    """
    return verify_until(secret, token, now)[0]


def verify_until(secret: bytes, token: str, now: float | None = None) -> tuple[Verified, int]:
    """((subject, grants, scoped repositories), expiry as a Unix time) of a valid token;
    raise Unauthenticated.

    The scoped repositories are all those the token endpoint was asked about,
    including the ones for which it granted no action.

    Only HS256 is accepted (never "none" or an algorithm named by the token),
    and issuer, audience and expiry must all be present and right.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=SERVICE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("Token expired") from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("Invalid token") from None
    subject = claims.get("sub") or ""
    expires = int(claims["exp"])  # an integer: PyJWT checked it
    if now is not None and expires <= now:  # a caller's clock (the cache's, tests')
        raise Unauthenticated("Token expired")
    grants: list[Grant] = []
    scoped: set[RepositoryName] = set()
    access = claims.get("access")
    if not isinstance(access, list):
        raise Unauthenticated("Invalid token")
    for entry in access:
        if not isinstance(entry, dict) or entry.get("type") != "repository":
            continue
        try:
            repository = RepositoryName.parse_oci(str(entry.get("name")))
        except RepositoryNameInvalid:
            raise Unauthenticated("Invalid token") from None
        actions = entry.get("actions")
        if not isinstance(actions, list):
            raise Unauthenticated("Invalid token")
        scoped.add(repository)
        grants += [Grant(subject, repository, a, expires) for a in actions if a in V2_SCOPE_ACTIONS]
    return (subject, grants, frozenset(scoped)), expires


class VerifiedTokens:
    """Tokens this process verified, so that each is checked once, not on every request.

    What a token grants is a function of its bytes and the secret alone (no account
    is looked up: a token stands until it expires, as in the Docker token flow), so
    an entry keyed by the token string, for the secret that verified it, is as good
    as verifying again until the token's ``exp``; past it the token is refused.
    Only tokens that verified are kept (a refusal is recomputed), at most
    ``max_entries``, least recently used first out. Not thread-safe: one event loop.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[bytes, int, Verified]] = OrderedDict()

    def verify(self, secret: bytes, token: str, now: float | None = None) -> Verified:
        """``verify``, from the cache when this token verified before; raise Unauthenticated."""
        now = time.time() if now is None else now
        entry = self._entries.get(token)
        if entry is not None:
            entry_secret, expires, verified = entry
            if entry_secret == secret and now < expires:
                self._entries.move_to_end(token)
                subject, grants, scoped = verified
                return subject, list(grants), scoped  # a copy: callers get their own list
            del self._entries[token]
        verified, expires = verify_until(secret, token, now)
        self._entries[token] = (secret, expires, verified)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return verified
