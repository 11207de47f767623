"""A docker 1.x client's index + registry flows with accounts and tokens (v1 spec §9)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from tests.support.images import V1Image
from tests.support.v1client import Http, V1Client

MAGIC_EXISTS = b'"Username or email already exists"'


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class DockerV1:
    """One docker daemon: logged in (``username``/``password``) or anonymous."""

    http: Http
    username: str | None = None
    password: str | None = None

    @property
    def basic(self) -> dict[str, str]:
        if self.username is None or self.password is None:
            return {}
        return {"Authorization": basic(self.username, self.password)}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
        return await V1Client(self.http).call(method, path, **kwargs)

    async def login(self, email: str = "") -> int:
        """docker 1.0-1.10: POST /v1/users/, then GET /v1/users/ on the magic 400."""
        assert self.username is not None
        assert self.password is not None
        body = {"username": self.username, "password": self.password, "auth": "", "email": email}
        status, text, _ = await self.call("POST", "/v1/users/", json=body)
        if status == 201:
            return 201
        if (status == 400 and text == MAGIC_EXISTS) or status == 401:
            status, _, _ = await self.call("GET", "/v1/users/", headers=self.basic)
        return status

    async def index(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, Any]:
        """An index call: Basic when logged in, and X-Docker-Token: true."""
        headers = {"X-Docker-Token": "true", **self.basic}
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            headers["Content-Type"] = "application/json"
        return await self.call(method, path, **kwargs)

    async def push(self, repository: str, tag: str, chain: list[V1Image]) -> None:
        """docker 1.10-17.05 push (§9.1): declare, registry calls with the token, finish."""
        declared = [{"id": i.image_id} for i in chain[:-1]] + [
            {"id": chain[-1].image_id, "Tag": tag}
        ]
        status, body, headers = await self.index("PUT", f"/v1/repositories/{repository}/", declared)
        assert status in (200, 201), (status, body)
        assert headers["X-Docker-Endpoints"]
        registry = V1Client(self.http, "Token " + headers["X-Docker-Token"])
        await registry.push(repository, tag, chain)
        status, body, _ = await self.index("PUT", f"/v1/repositories/{repository}/images", [])
        assert status == 204, (status, body)

    async def pull(self, repository: str, tag: str) -> list[tuple[str, bytes, bytes]]:
        """docker 1.10-17.05 pull (§9.2): the image list gives a read token for the rest."""
        status, body, headers = await self.index("GET", f"/v1/repositories/{repository}/images")
        assert status == 200, (status, body)
        registry = V1Client(self.http, "Token " + headers["X-Docker-Token"])
        name = repository if "/" in repository else f"library/{repository}"
        return await registry.pull(name, tag)
