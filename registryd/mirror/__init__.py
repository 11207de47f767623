"""Pull-through cache: upstream registries mirrored under local namespaces."""
