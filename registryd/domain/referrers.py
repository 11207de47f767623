"""The OCI 1.1 referrers of a manifest (spec end-12a): manifests whose ``subject`` is it."""

from __future__ import annotations

from registryd.db import manifest_queries, repository_queries
from registryd.db.manifest_queries import ReferrerRow
from registryd.digest import Digest
from registryd.domain.services import Services
from registryd.names import RepositoryName


async def list_referrers(
    svc: Services, name: RepositoryName, subject: Digest, artifact_type: str | None
) -> list[ReferrerRow]:
    """Manifests of the repository whose subject is ``subject`` (empty if none, never unknown)."""
    async with svc.pool.acquire() as conn:
        repo = await repository_queries.fetch_repository(conn, name)
        if repo is None:
            return []
        return await manifest_queries.fetch_referrers(
            conn, repo.repository_id, subject, artifact_type
        )
