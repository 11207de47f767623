"""Protocol-neutral rules: what an image, blob, repository and tag may be and do."""
