"""Identifier grammar: image ids, repository names and tags (v1 spec §3, OCI distribution spec)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NewType

from registryd.errors import ImageIdInvalid, RepositoryNameInvalid, TagNameInvalid

ImageId = NewType("ImageId", str)

LIBRARY_NAMESPACE = "library"

_IMAGE_ID_RE = re.compile(r"^[a-f0-9]{64}$")
# Usernames double as namespaces (§3.2, §3.4).
_NAMESPACE_RE = re.compile(r"^[a-z0-9_]{4,30}$")
_REPOSITORY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,254}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
TAG_PATTERN = _TAG_RE.pattern
# OCI distribution spec "<name>": path components joined by "/".
_OCI_NAME_RE = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
# Clients limit host + name to 255 characters; a name alone cannot be longer.
OCI_NAME_MAX_LENGTH = 255
# Trailing path words of /v1/repositories/...: a repository so named would be ambiguous.
RESERVED_REPOSITORY_NAMES = frozenset({"images", "tags", "auth", "json", "properties", "layer"})


def parse_image_id(text: str) -> ImageId:
    """Return the id if it is 64 lowercase hex; raise ImageIdInvalid otherwise."""
    if _IMAGE_ID_RE.fullmatch(text) is None:
        raise ImageIdInvalid(text)
    return ImageId(text)


@dataclass(frozen=True, slots=True)
class RepositoryName:
    """``namespace/repository``; one-segment names live in ``library``."""

    namespace: str
    repository: str

    @classmethod
    def parse(cls, namespace: str | None, repository: str) -> RepositoryName:
        """Validate both parts; raise RepositoryNameInvalid naming what is wrong."""
        ns = LIBRARY_NAMESPACE if namespace is None else namespace
        if ns != LIBRARY_NAMESPACE and _NAMESPACE_RE.fullmatch(ns) is None:
            raise RepositoryNameInvalid(ns, "namespace must be 4-30 characters of a-z, 0-9 and _")
        if _REPOSITORY_RE.fullmatch(repository) is None:
            raise RepositoryNameInvalid(
                repository,
                "repository name must match ^[a-z0-9][a-z0-9._-]{0,254}$",
            )
        if repository in RESERVED_REPOSITORY_NAMES:
            raise RepositoryNameInvalid(repository, "repository name is a reserved word")
        return cls(ns, repository)

    @classmethod
    def parse_oci(cls, text: str) -> RepositoryName:
        """Parse a v2 ``<name>``; raise RepositoryNameInvalid.

        The first component is the namespace, as in v1, so ``alice/app`` is the
        same repository in both APIs; a one-component name lives in ``library``.
        Deeper names (``alice/tools/app``) keep the rest as the repository part.
        """
        if len(text) > OCI_NAME_MAX_LENGTH or _OCI_NAME_RE.fullmatch(text) is None:
            raise RepositoryNameInvalid(text, "name must match the OCI distribution name grammar")
        namespace, slash, repository = text.partition("/")
        if not slash:
            return cls(LIBRARY_NAMESPACE, text)
        return cls(namespace, repository)

    def for_oci(self) -> str:
        """The v2 spelling: ``library/<name>`` is written ``<name>``, as docker does."""
        if self.namespace == LIBRARY_NAMESPACE:
            return self.repository
        return str(self)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.repository}"


def parse_tag(text: str) -> str:
    """Return the tag if it matches the ASCII tag grammar; raise TagNameInvalid."""
    if _TAG_RE.fullmatch(text) is None:
        raise TagNameInvalid(text)
    return text
