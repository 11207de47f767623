"""v1 index tokens (v1 spec §4.2): ``signature=…,repository="ns/name",access=…``.

A token is a bearer credential for one repository and one access level until
it expires. The signature is an HMAC-SHA256 over every other field, keyed by
the server's secret, so replicas sharing the secret accept each other's tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

from registryd.access.decision import V1_ACCESS_LEVELS
from registryd.access.identity import Grant as Grant
from registryd.errors import RepositoryNameInvalid, Unauthenticated
from registryd.names import RepositoryName

_FIELD_RE = re.compile(r'(\w+)\s*[:=]\s*"?([^",]*)"?')


def _sign(secret: bytes, username: str, repository: str, access: str, expires: int) -> str:
    message = "\n".join((username, repository, access, str(expires))).encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def issue_token(secret: bytes, grant: Grant) -> str:
    """The ``X-Docker-Token`` value for ``grant`` (no ``Token`` prefix, as the docs show)."""
    repository = str(grant.repository)
    signature = _sign(secret, grant.username, repository, grant.access, grant.expires)
    return (
        f'signature={signature},repository="{repository}",access={grant.access},'
        f'expires={grant.expires},user="{grant.username}"'
    )


def parse_token_header(value: str) -> list[dict[str, str]]:
    """Split ``Token a=1,b=2[,a=3,...]`` into one dict per token.

    docker joins several tokens with commas, and docker-registry's own index put
    a literal ``Token `` inside the value, so ``Token Token signature=…`` occurs.
    """
    tokens: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for key, field_value in _FIELD_RE.findall(value):
        key = key.lower()
        if key in current:
            tokens.append(current)
            current = {}
        current[key] = field_value
    if current:
        tokens.append(current)
    return tokens


def verify_token(secret: bytes, fields: dict[str, str], now: float | None = None) -> Grant:
    """The grant of a well-formed, untampered, unexpired token; raise Unauthenticated."""
    try:
        signature = fields["signature"]
        repository_text = fields["repository"]
        access = fields["access"]
        expires = int(fields["expires"])
        username = fields.get("user", "")
    except (KeyError, ValueError):
        raise Unauthenticated("Invalid token") from None
    expected = _sign(secret, username, repository_text, access, expires)
    if not hmac.compare_digest(expected, signature):
        raise Unauthenticated("Invalid token")
    if expires < (time.time() if now is None else now):
        raise Unauthenticated("Token expired")
    if access not in V1_ACCESS_LEVELS:
        raise Unauthenticated("Invalid token")
    namespace, _, name = repository_text.partition("/")
    try:
        repository = RepositoryName.parse(namespace, name)
    except RepositoryNameInvalid:
        raise Unauthenticated("Invalid token") from None
    return Grant(username, repository, access, expires)
