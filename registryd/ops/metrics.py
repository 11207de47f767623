"""Prometheus metrics: what is counted, and how several processes add up.

With ``metrics_dir`` set, prometheus-client's multiprocess mode is on: each
process writes its samples to memory-mapped files in that directory and a
scrape of any process aggregates all of them. ``serve`` always runs in that
mode (``multiprocess_metrics`` makes the directory and exports it before any
worker process starts); apps built without ``metrics_dir`` (tests) keep their
samples in memory. Labels are route templates, never raw paths, so image ids
and digests cannot multiply the series.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from registryd import __version__

__all__ = ["CONTENT_TYPE", "Metrics", "enable_multiprocess", "multiprocess_metrics"]

# prometheus-client's multiprocess mode is keyed on this variable: the client
# reads it to place each process's files, and worker processes inherit it.
MULTIPROC_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"

# From a ping to a multi-GiB layer over a slow link.
DURATION_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
)  # fmt: skip
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})


def enable_multiprocess(metrics_dir: Path) -> None:
    """Switch this process to multiprocess samples in ``metrics_dir`` (idempotent).

    Must run before any metric is created. The variable is set for the sake
    of prometheus-client and of worker processes started after this call.
    """
    os.environ[MULTIPROC_DIR_VAR] = str(metrics_dir)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue(process_identifier=_PROCESS_ID.get)  # type: ignore[no-untyped-call]  # untyped library


class _ProcessId:
    """This process's id, kept up to date across forks.

    prometheus-client compares it with its own on every sample (a forked process
    must write files of its own); ``os.getpid`` is a system call each time, six
    per request.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._pid = os.getpid()

    def get(self) -> int:
        return self._pid


_PROCESS_ID = _ProcessId()


@contextlib.contextmanager
def multiprocess_metrics(metrics_dir: Path | None) -> Iterator[Path]:
    """Enable multiprocess metrics in ``metrics_dir``, or in a temp dir removed at exit.

    A configured directory is emptied first: files left by an earlier run
    would make counters continue from old values. Blocks (start-up only).
    """
    if metrics_dir is None:
        path = Path(tempfile.mkdtemp(prefix="registryd-metrics-"))
    else:
        path = metrics_dir
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    enable_multiprocess(path)
    try:
        yield path
    finally:
        if metrics_dir is None:
            shutil.rmtree(path, ignore_errors=True)


class Metrics:
    """Every metric registryd exports, created once per application."""

    def __init__(self, metrics_dir: Path | None = None) -> None:
        if metrics_dir is not None:
            enable_multiprocess(metrics_dir)
        self.metrics_dir = metrics_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        route = ["method", "route"]
        self.requests = Counter(
            "registryd_http_requests",
            "HTTP requests answered, by route template, method and status.",
            [*route, "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "registryd_http_request_duration_seconds",
            "Time from the request's arrival to its last body byte sent.",
            route,
            buckets=DURATION_BUCKETS_SECONDS,
            registry=r,
        )
        self.received_bytes = Counter(
            "registryd_http_received_bytes", "Request body bytes read.", route, registry=r
        )
        self.sent_bytes = Counter(
            "registryd_http_sent_bytes", "Response body bytes sent.", route, registry=r
        )
        self.requests_in_progress = Gauge(
            "registryd_http_requests_in_progress",
            "Requests being handled now.",
            route,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.uploads_in_progress = Gauge(
            "registryd_uploads_in_progress",
            "Blob uploads streaming into storage now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.storage_errors = Counter(
            "registryd_storage_errors",
            "Storage operations that failed with an OS error, by operation.",
            ["operation"],
            registry=r,
        )
        self.db_pool_connections = Gauge(
            "registryd_db_pool_connections",
            "Database pool connections open, by state (in_use, idle).",
            ["state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.db_pool_max_connections = Gauge(
            "registryd_db_pool_max_connections",
            "Database pool ceiling, summed over processes.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.build_info = Gauge(
            "registryd_build_info",
            "Always 1; the version is a label.",
            ["version"],
            multiprocess_mode="max",
            registry=r,
        )
        self.build_info.labels(__version__).set(1)
        self._routes: dict[tuple[str, str], RouteMetrics] = {}

    def route(self, method: str, route: str) -> RouteMetrics:
        """The children of one (method, route) pair, looked up once and then cached.

        ``labels()`` costs a lock and validation per call; requests should not.
        The cache is bounded like the series are: by methods times route templates.
        """
        key = (method_label(method), route)
        if (found := self._routes.get(key)) is None:
            found = self._routes[key] = RouteMetrics(self, *key)
        return found

    def sample_pool(self, pool: asyncpg.Pool) -> None:
        """Record the pool's current use (cheap: no IO)."""
        size, idle = pool.get_size(), pool.get_idle_size()
        self.db_pool_connections.labels("in_use").set(size - idle)
        self.db_pool_connections.labels("idle").set(idle)
        self.db_pool_max_connections.set(pool.get_max_size())

    def render(self) -> bytes:
        """The exposition text. Reads every process's files in multiprocess mode: blocks."""
        if self.metrics_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)


class RouteMetrics:
    """The samples of one (method, route) pair."""

    def __init__(self, metrics: Metrics, method: str, route: str) -> None:
        self._requests = metrics.requests
        self._method, self._route = method, route
        self._by_status: dict[int, Any] = {}
        self.in_progress = metrics.requests_in_progress.labels(method, route)
        self._seconds = metrics.request_seconds.labels(method, route)
        self._received = metrics.received_bytes.labels(method, route)
        self._sent = metrics.sent_bytes.labels(method, route)

    def observe(
        self, status: int, duration_seconds: float, received_bytes: int, sent_bytes: int
    ) -> None:
        if (requests := self._by_status.get(status)) is None:
            requests = self._requests.labels(self._method, self._route, str(status))
            self._by_status[status] = requests
        requests.inc()
        self._seconds.observe(duration_seconds)
        if received_bytes:
            self._received.inc(received_bytes)
        if sent_bytes:
            self._sent.inc(sent_bytes)


def method_label(method: str) -> str:
    """The method as a label: arbitrary tokens would be unbounded cardinality."""
    return method if method in METHODS else "other"
