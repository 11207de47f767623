"""Domain errors: what went wrong, in the protocol's words, with no HTTP in them.

Each protocol's ``errors.py`` maps these classes to a status and a wire body.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base of every error a client can cause."""


# Identifiers ---------------------------------------------------------------


class ImageIdInvalid(RegistryError):
    """An image id is not 64 lowercase hex characters."""


class RepositoryNameInvalid(RegistryError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name!r}: {reason}")
        self.name = name
        self.reason = reason


class TagNameInvalid(RegistryError):
    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


class DigestInvalid(RegistryError):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# Images (v1) ---------------------------------------------------------------


class ImageUnknown(RegistryError):
    """No JSON was ever stored for this image id."""


class ImageBeingUploaded(RegistryError):
    """The image exists but its upload has not been completed by PUT checksum."""


class ImageAlreadyExists(RegistryError):
    """The image is complete; it can no longer be written."""


class ImageJsonInvalid(RegistryError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ParentUnknown(RegistryError):
    """The image's ``parent`` has no stored JSON."""


class ImageChanged(RegistryError):
    """The image JSON was re-sent while its layer was streaming; the layer is stale."""


class LayerNotUploaded(RegistryError):
    """A payload checksum was sent before any layer bytes."""


class ChecksumMissing(RegistryError):
    """PUT checksum carried neither checksum header (or an empty one)."""


class ChecksumMismatch(RegistryError):
    """The client's payload checksum differs from the one computed while streaming."""


class ChecksumAlreadySet(RegistryError):
    """PUT checksum on an image that is already complete."""


class TarsumUnverifiable(RegistryError):
    """Only a tarsum was sent for an uploaded layer; we verify payload checksums only."""


class ChecksumInvalid(RegistryError):
    """A checksum header holding characters no checksum has (control bytes, non-ASCII)."""


class ParentIncomplete(RegistryError):
    """The image's ``parent`` is still being uploaded: its ancestry could still change."""


class AncestryInvalid(RegistryError):
    """The parent chain loops back to the image, or is deeper than we store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageHeldElsewhere(RegistryError):
    """The image id is being uploaded by another repository, which the caller cannot write."""

    def __init__(self, image_id: str) -> None:
        super().__init__(image_id)
        self.image_id = image_id


# Repositories and tags -----------------------------------------------------


class RepositoryUnknown(RegistryError):
    pass


class TagUnknown(RegistryError):
    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


class TagBodyInvalid(RegistryError):
    """A tag PUT body that is not a JSON string."""


# Blobs ---------------------------------------------------------------------


class BlobUnknown(RegistryError):
    """No blob is stored under this digest."""


# Bodies --------------------------------------------------------------------


class BodyTooLarge(RegistryError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"body exceeds {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


class BodyIncomplete(RegistryError):
    """The client closed the connection before sending the whole body."""


class StorageFull(RegistryError):
    """The blob store has no space left (ENOSPC/EDQUOT): nothing was stored, retry later."""


class DigestMismatch(RegistryError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


# Access ----------------------------------------------------------------------


class Unauthenticated(RegistryError):
    """Missing, malformed or wrong credentials, or a bad token (401)."""

    def __init__(self, reason: str = "Requires authorization") -> None:
        super().__init__(reason)
        self.reason = reason


class AccessDenied(RegistryError):
    """A known identity without the permission it needs (403)."""

    def __init__(self, reason: str = "Access denied") -> None:
        super().__init__(reason)
        self.reason = reason


class ImageNotDeclared(RegistryError):
    """An image write for a repository whose index list does not hold the image."""


# Users and the index -----------------------------------------------------------


class UserExists(RegistryError):
    """The username or e-mail address is taken."""


class UserInvalid(RegistryError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UserUnknown(RegistryError):
    pass


class SignupDisabled(RegistryError):
    pass


class HostInvalid(RegistryError):
    """The ``Host`` header is not ``host[:port]``, so it cannot go into a URL we hand out."""


class RequestInvalid(RegistryError):
    """A body or query parameter the endpoint cannot use."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Upload sessions and manifests (OCI distribution) --------------------------


class UploadUnknown(RegistryError):
    """No upload session has this id in this repository (never started, finished or expired)."""


class UploadRangeInvalid(RegistryError):
    """A chunk does not start where the upload ends (chunks must arrive in order)."""

    def __init__(self, size_bytes: int | None = None) -> None:
        super().__init__("malformed Content-Range" if size_bytes is None else f"at {size_bytes}")
        self.size_bytes = size_bytes  # None: the Content-Range itself is malformed


class UploadBusy(RegistryError):
    """Another request is writing to this upload session right now (retry later)."""


class ContentRangeInvalid(RegistryError):
    """A ``Content-Range`` that cannot be parsed or contradicts itself or the session."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooManyUploads(RegistryError):
    """The user already has as many open upload sessions as allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} open upload sessions")
        self.limit = limit


class StillReferenced(RegistryError):
    """A blob or manifest that a manifest of the repository refers to cannot be deleted."""

    def __init__(self, digest: str, referrer: str) -> None:
        super().__init__(f"{digest} is referenced by manifest {referrer}")
        self.digest = digest
        self.referrer = referrer


class SizeInvalid(RegistryError):
    """The body's length does not match what Content-Range or Content-Length announced."""


class ManifestUnknown(RegistryError):
    def __init__(self, reference: str) -> None:
        super().__init__(reference)
        self.reference = reference


class ManifestInvalid(RegistryError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ManifestBlobUnknown(RegistryError):
    """A manifest refers to a blob (or child manifest) this repository does not hold."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest)
        self.digest = digest


class PaginationNumberInvalid(RegistryError):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class AuthChallenge(RegistryError):
    """v2: the request needs (other) credentials; answered with a Bearer challenge (401).

    ``scope`` is the Docker token scope that would allow it, ``error`` the
    RFC 6750 error code (``insufficient_scope`` for a token lacking it).
    """

    def __init__(self, reason: str, scope: str | None, error: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.scope = scope
        self.error = error


# Availability ----------------------------------------------------------------


class Retryable(RegistryError):
    """The request was fine but cannot be served now; ``retry_after`` seconds is a good wait."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DatabaseUnavailable(Retryable):
    """PostgreSQL is down, unreachable or too slow to answer in time (503)."""

    def __init__(self, reason: str = "database unavailable", retry_after: int = 5) -> None:
        super().__init__(reason, retry_after)


class StorageUnavailable(Retryable):
    """The blob store (an object store over the network) is unreachable, failing or too
    slow: nothing was stored (503)."""

    def __init__(self, reason: str = "storage unavailable", retry_after: int = 5) -> None:
        super().__init__(reason, retry_after)


class ServerBusy(Retryable):
    """A bounded resource (such as password hashing) is saturated (503)."""


class TooManyRequests(Retryable):
    """The client (address or account) exceeded a rate limit (429)."""
