"""The OCI Distribution (v2) API: blobs, uploads, manifests, tags, referrers, catalog."""
