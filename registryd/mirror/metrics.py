"""The pull-through cache's counters, beside the application's (same registry, same files)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from registryd.ops.metrics import Metrics


class MirrorMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.hits = Counter(
            "registryd_mirror_hits",
            "Mirrored manifests and blobs served from the cache, by upstream and kind.",
            ["upstream", "kind"],
            registry=r,
        )
        self.misses = Counter(
            "registryd_mirror_misses",
            "Mirrored manifests and blobs fetched from the upstream, by upstream and kind.",
            ["upstream", "kind"],
            registry=r,
        )
        self.stale = Counter(
            "registryd_mirror_stale_served",
            "Tags served past their TTL because the upstream could not be asked.",
            ["upstream"],
            registry=r,
        )
        self.upstream_bytes = Counter(
            "registryd_mirror_upstream_bytes",
            "Blob bytes read from upstreams.",
            ["upstream"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "registryd_mirror_upstream_errors",
            "Upstream requests that failed (unreachable, 5xx, refused, bad answer).",
            ["upstream"],
            registry=r,
        )
        self.coalesced = Counter(
            "registryd_mirror_coalesced_waiters",
            "Requests that joined a blob download already in flight instead of fetching.",
            ["upstream"],
            registry=r,
        )
        self.evicted_blobs = Counter(
            "registryd_mirror_evicted_blobs",
            "Blobs evicted from the cache, by upstream and reason (size, age).",
            ["upstream", "reason"],
            registry=r,
        )
        self.evicted_bytes = Counter(
            "registryd_mirror_evicted_bytes",
            "Bytes of the blobs evicted from the cache, by upstream and reason (size, age).",
            ["upstream", "reason"],
            registry=r,
        )
        self.evicted_manifests = Counter(
            "registryd_mirror_evicted_manifests",
            "Manifests evicted from the cache because they were not pulled for "
            "cache_max_age_seconds.",
            ["upstream"],
            registry=r,
        )
        self.downloads_in_progress = Gauge(
            "registryd_mirror_downloads_in_progress",
            "Blob downloads from upstreams running now.",
            multiprocess_mode="livesum",
            registry=r,
        )
