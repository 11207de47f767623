"""The web UI: server-rendered pages under /ui/ that read through the same access policy
as the registry APIs and never authenticate them."""
