"""Blob storage: bytes keyed by digest. Knows nothing of images, repositories or tags."""
