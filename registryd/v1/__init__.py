"""The Docker Registry v1 API (images, layers, checksums, ancestry, tags, ping)."""
