"""The backend the settings ask for (the composition root's one storage decision)."""

from __future__ import annotations

from registryd.config import Settings
from registryd.storage.base import Backend


def backend_from_settings(settings: Settings, *, open_files: int | None = None) -> Backend:
    """A new, not yet started backend; ``open_files`` overrides the setting."""
    if settings.storage == "s3":
        # Imported only when used: botocore is large, and the filesystem needs none of it.
        from registryd.storage.s3 import S3Backend

        return S3Backend(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            region=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url or None,
            path_style=settings.s3_path_style,
            part_bytes=settings.s3_part_bytes,
            redirect=settings.s3_redirect,
        )
    from registryd.storage.filesystem import FilesystemBackend

    return FilesystemBackend(
        settings.storage_root,
        settings.open_files if open_files is None else open_files,
        drop_pages=settings.drop_written_pages,
    )
