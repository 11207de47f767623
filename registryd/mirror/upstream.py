"""An upstream registry as the mirror talks to it: v2 reads with the token dance.

The first request goes out without credentials; a 401's ``WWW-Authenticate``
says how to authenticate: ``Bearer realm=…,service=…`` (fetch a token for the
repository's pull scope, with our Basic credentials if we have some) or
``Basic``. What we learnt is kept, so later requests authenticate at once, and
tokens are reused until shortly before they expire.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from registryd.config import Upstream
from registryd.digest import Digest
from registryd.domain.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from registryd.errors import BlobUnknown, DigestInvalid, ManifestUnknown, RegistryError
from registryd.mirror.errors import UpstreamDenied, UpstreamInvalid, UpstreamUnavailable

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
# Token lifetime when the token endpoint names none (Docker token spec: 60 s).
_DEFAULT_TOKEN_SECONDS = 60
# A token is renewed this long before it expires, so it never lapses in flight.
_TOKEN_MARGIN_SECONDS = 10
_CHALLENGE_RE = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None if unusable."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "basic"):
        return None
    params = {
        m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _CHALLENGE_RE.finditer(rest)
    }
    if scheme == "bearer" and not params.get("realm", "").startswith(("http://", "https://")):
        return None
    return Challenge(scheme, params)


@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic()


class UpstreamClient:
    """One upstream's HTTP client; every method raises the mirror's UpstreamError kinds."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.name = upstream.namespace
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=upstream.connect_timeout_seconds,
            sock_connect=upstream.connect_timeout_seconds,
            sock_read=upstream.read_timeout_seconds,
        )
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        self._challenge: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        # What the admin page shows (this process's view): when the upstream last
        # answered usefully, and the last failure with its reason (wall-clock times).
        self.last_ok: float | None = None
        self.last_error: tuple[float, str] | None = None
        self._token_locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        await self._session.close()

    # Authentication ----------------------------------------------------------

    def _basic(self) -> str | None:
        up = self.upstream
        if up.username is None or up.password is None:
            return None
        pair = f"{up.username}:{up.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    async def _authorization(self, scope: str) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            basic = self._basic()
            if basic is None:
                raise UpstreamDenied(self.name, "upstream requires credentials; none configured")
            return basic
        token = self._tokens.get(scope)
        if token is not None and token.expires_at > time.monotonic():
            return "Bearer " + token.value
        lock = self._token_locks.setdefault(scope, asyncio.Lock())
        async with lock:  # one token request per scope, however many pulls wait for it
            token = self._tokens.get(scope)
            if token is None or token.expires_at <= time.monotonic():
                token = await self._fetch_token(challenge, scope)
                self._tokens[scope] = token
        return "Bearer " + token.value

    def may_send_credentials(self, realm: str) -> bool:
        """Our password goes to a token realm over HTTPS, or to the upstream's own host:
        an upstream must not be able to send it to a plain-HTTP third party."""
        parts = urlsplit(realm)
        return parts.scheme == "https" or parts.hostname == urlsplit(self.upstream.url).hostname

    async def _fetch_token(self, challenge: Challenge, scope: str) -> _Token:
        query = {"scope": scope}
        if service := challenge.params.get("service"):
            query["service"] = service
        headers = {}
        if (basic := self._basic()) is not None and self.may_send_credentials(
            challenge.params["realm"]
        ):
            headers["Authorization"] = basic
        try:
            async with self._session.get(
                challenge.params["realm"], params=query, headers=headers
            ) as resp:
                if resp.status in (401, 403):
                    raise UpstreamDenied(self.name, f"token endpoint answered {resp.status}")
                if resp.status != 200:
                    raise _status_error(self.name, resp.status, "token endpoint")
                data: Any = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(self.name, f"token endpoint: {_describe(exc)}") from None
        value = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise UpstreamInvalid(self.name, "token endpoint sent no token")
        expires_in = data.get("expires_in")
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = _DEFAULT_TOKEN_SECONDS
        lifetime = max(expires_in - _TOKEN_MARGIN_SECONDS, expires_in / 2)
        return _Token(value, time.monotonic() + lifetime)

    # Requests ------------------------------------------------------------------

    @asynccontextmanager
    async def request(
        self, method: str, path: str, repository: str, headers: dict[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's answer to ``method path`` (any status), authenticated as needed.

        Raises UpstreamUnavailable when it cannot be reached in time.
        """
        scope = f"repository:{repository}:pull"
        url = self.upstream.url + path
        resp: aiohttp.ClientResponse | None = None
        for attempt in range(2):
            sent = dict(headers or {})
            if (authorization := await self._authorization(scope)) is not None:
                sent["Authorization"] = authorization
            try:
                resp = await self._session.request(method, url, headers=sent)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise self._failed(UpstreamUnavailable(self.name, _describe(exc))) from None
            if resp.status != 401 or attempt == 1:
                break
            challenge = parse_challenge(resp.headers.get("WWW-Authenticate"))
            resp.release()
            if challenge is None:
                raise self._failed(
                    UpstreamDenied(self.name, "401 without a usable WWW-Authenticate challenge")
                )
            if challenge == self._challenge and challenge.scheme == "basic":
                raise self._failed(UpstreamDenied(self.name, "credentials refused"))
            self._challenge = challenge
            self._tokens.pop(scope, None)  # expired or revoked: ask again
        assert resp is not None
        try:
            yield resp
        finally:
            resp.release()

    async def get_manifest(
        self, repository: str, reference: str
    ) -> tuple[bytes, str | None, Digest | None]:
        """The manifest's bytes, Content-Type and Docker-Content-Digest; raise ManifestUnknown."""
        path = f"/v2/{repository}/manifests/{reference}"
        try:
            async with self.request("GET", path, repository, {"Accept": MANIFEST_ACCEPT}) as resp:
                self.check(resp, ManifestUnknown(reference))
                if (resp.content_length or 0) > MAX_MANIFEST_BYTES:
                    raise UpstreamInvalid(self.name, "manifest larger than 4 MiB")
                body = await resp.content.read(MAX_MANIFEST_BYTES + 1)
                if len(body) > MAX_MANIFEST_BYTES:
                    raise UpstreamInvalid(self.name, "manifest larger than 4 MiB")
                return body, resp.headers.get("Content-Type"), _content_digest(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(self.name, _describe(exc)) from None

    async def head_manifest(self, repository: str, reference: str) -> Digest | None:
        """The digest the upstream names for ``reference`` (None if it names none)."""
        path = f"/v2/{repository}/manifests/{reference}"
        async with self.request("HEAD", path, repository, {"Accept": MANIFEST_ACCEPT}) as resp:
            self.check(resp, ManifestUnknown(reference))
            return _content_digest(resp)

    async def head_blob(self, repository: str, digest: Digest) -> int | None:
        """The blob's size as the upstream states it; raise BlobUnknown."""
        async with self.request("HEAD", f"/v2/{repository}/blobs/{digest}", repository) as resp:
            self.check(resp, BlobUnknown(str(digest)))
            return resp.content_length

    def check(self, resp: aiohttp.ClientResponse, not_found: RegistryError) -> None:
        """Raise for anything but 200: ``not_found`` for 404, else an UpstreamError."""
        if resp.status in (200, 404):
            self.last_ok = time.time()
        if resp.status == 200:
            return
        if resp.status == 404:
            raise not_found
        raise self._failed(_status_error(self.name, resp.status, "upstream"))

    def _failed(self, exc: RegistryError) -> RegistryError:
        """Note ``exc`` as the last failure (for the admin page) and return it."""
        self.last_error = (time.time(), str(exc))
        return exc


def _status_error(name: str, status: int, what: str) -> RegistryError:
    if status in (401, 403):
        return UpstreamDenied(name, f"{what} answered {status}")
    if status == 429 or status >= 500:
        return UpstreamUnavailable(name, f"{what} answered {status}")
    return UpstreamInvalid(name, f"{what} answered {status}")


def _content_digest(resp: aiohttp.ClientResponse) -> Digest | None:
    text = resp.headers.get("Docker-Content-Digest")
    if text is None:
        return None
    try:
        return Digest.parse(text)
    except DigestInvalid:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
