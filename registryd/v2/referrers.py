"""``GET /v2/<name>/referrers/<digest>[?artifactType=]`` (spec end-12, OCI 1.1).

Always an image index, empty when nothing refers to the digest: a 404 would
tell clients we lack the API and send them to the fallback tag schema.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from registryd.access.decision import Action
from registryd.domain import referrers
from registryd.domain.manifests import OCI_INDEX
from registryd.errors import RequestInvalid
from registryd.jsonbody import storable_text
from registryd.keys import SERVICES
from registryd.v2.access import authorize
from registryd.v2.url_grammar import path_digest, repository_name


async def get_referrers(request: web.Request) -> web.Response:
    name = repository_name(request)
    subject = path_digest(request)
    artifact_type = request.query.get("artifactType") or None
    if artifact_type is not None and not storable_text(artifact_type):
        raise RequestInvalid("artifactType must not contain NUL")
    await authorize(request, Action.READ, name)
    rows = await referrers.list_referrers(
        request.config_dict[SERVICES], name, subject, artifact_type
    )
    descriptors: list[dict[str, Any]] = []
    for row in rows:
        descriptor: dict[str, Any] = {
            "mediaType": row.media_type,
            "digest": str(row.digest),
            "size": row.size_bytes,
        }
        if row.artifact_type is not None:
            descriptor["artifactType"] = row.artifact_type
        if row.annotations:
            descriptor["annotations"] = row.annotations
        descriptors.append(descriptor)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    headers = {"Content-Type": OCI_INDEX}  # exactly, without a charset
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    return web.Response(body=json.dumps(index).encode(), headers=headers)
