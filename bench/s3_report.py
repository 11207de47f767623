"""The ``s3`` section's table: registryd next to distribution on one moto server, with
moto's own CPU beside every figure (``bench/s3.py`` runs the points)."""

from __future__ import annotations

import statistics

from bench import moto, report
from bench.report import Point
from bench.s3 import DISTRIBUTION_ROOT, PART_BYTES, REGISTRYD_PREFIX, Outcome, S3Sample

# moto serves from one process under one GIL: this busy, it is what limits the point.
STORE_BOUND_CPU = 0.9


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _store_cpu(point: Point, target: str) -> float | None:
    return _median([s.store_cpu for s in point.samples.get(target, []) if isinstance(s, S3Sample)])


def _store_share(point: Point, target: str) -> float | None:
    shares = [
        share
        for s in point.samples.get(target, [])
        if isinstance(s, S3Sample) and (share := s.store_share) is not None
    ]
    return _median(shares)


def store_bound(point: Point, target: str) -> bool:
    """Whether moto was >= 90% of a core busy in most runs of ``target``."""
    samples = point.samples.get(target, [])
    busy = sum(isinstance(s, S3Sample) and s.store_cpu >= STORE_BOUND_CPU for s in samples)
    return bool(samples) and 2 * busy > len(samples)


def _value(point: Point, target: str) -> str:
    value = point.median(target)
    if value is None:
        return "-"
    marks = " **FAILED**" if point.errors(target) else ""
    marks += " client-bound" if point.client_bound(target) else ""
    marks += " moto-bound" if store_bound(point, target) else ""
    return f"{value:.0f}{marks}"


def ratio_cell(point: Point) -> str:
    value = point.ratio("distribution")
    if value is None:
        return "-"
    if point.errors("registryd") or point.errors("distribution"):
        return f"INVALID ({value:.2f}x over failed requests)"
    bounds = [
        mark
        for mark, bound in (
            ("client-bound", point.client_bound),
            ("moto-bound", lambda target: store_bound(point, target)),
        )
        if bound("registryd") or bound("distribution")
    ]
    return f"{value:.2f}x" + (f" ({', '.join(bounds)})" if bounds else "")


def _pair(point: Point, cell: str) -> str:
    """``cell`` ("cpu", "share", "client", "rss") for registryd / distribution."""
    shown = []
    for target in ("registryd", "distribution"):
        samples = point.samples.get(target, [])
        if not samples:
            shown.append("-")
        elif cell == "cpu":
            shown.append(f"{(_store_cpu(point, target) or 0) * 100:.0f}%")
        elif cell == "share":
            share = _store_share(point, target)
            shown.append("-" if share is None else f"{share * 100:.0f}%")
        elif cell == "client":
            shown.append(f"{statistics.median(s.client_cpu for s in samples) * 100:.0f}%")
        else:
            shown.append(f"{max(s.peak_rss_bytes for s in samples) / 1024**2:.0f}")
    return " / ".join(shown)


def _moto_rss(point: Point) -> str:
    peaks = [
        s.store_peak_rss_bytes
        for samples in point.samples.values()
        for s in samples
        if isinstance(s, S3Sample)
    ]
    return f"{max(peaks) / 1024**2:.0f}" if peaks else "-"


def render(outcome: Outcome, command: str) -> str:
    """The section's Markdown: setup, why a target is missing, the table, how to rerun."""
    lines = [
        "",
        "## S3 backend (registryd s3 next to distribution 2.8 s3, one moto server)",
        "",
        f"- Store: {outcome.endpoint_version} (`python -m moto.server`, a threaded Python "
        "server) on 127.0.0.1, one bucket "
        f"`{moto.BUCKET}`; registryd under the prefix `{REGISTRYD_PREFIX}`, distribution under "
        f"`rootdirectory: {DISTRIBUTION_ROOT}` (its `s3` driver: `regionendpoint`, path style, "
        f"`v4auth`, `secure: false`, `chunksize` = registryd's `s3_part_bytes` = "
        f"{report.size(PART_BYTES)}). Dummy credentials; both registries in auth `none`.",
        "- Proxied rows: `s3_redirect = false` / `redirect.disable: true`, driven by wrk. "
        "Redirect rows: every GET answers 307 to a presigned URL, and the Python generator "
        "follows it to moto on a second keep-alive connection (wrk does not follow redirects): "
        "the whole client flow, so the bytes are moto's, not the registry's. Push rows: unique "
        "v2 POST+PUT, the Python generator.",
        "- **moto CPU** is the S3 server's own CPU (1.0 = one core; one GIL caps it near "
        "100%); **moto share** is its part of the server-side CPU (registry + moto). A value "
        "marked `moto-bound` had moto >= 90% busy: it measures moto more than the registry.",
        "- Reproduce: `python -m bench --sections s3` (with `--smoke`: seconds); this run: `"
        + command
        + "`.",
    ]
    for name, reason in outcome.missing.items():
        lines.append(f"- **{name}: no rows: {reason}**")
    lines += [
        "",
        "| section | point | c | registryd MB/s | distribution MB/s | registryd/distribution "
        "| moto CPU (r / d) | moto share (r / d) | client CPU (r / d) "
        "| peak RSS MiB (r / d) | moto peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in outcome.points:
        lines.append(
            f"| {p.section} | {p.label} | {p.concurrency} | {_value(p, 'registryd')} "
            f"| {_value(p, 'distribution')} | {ratio_cell(p)} | {_pair(p, 'cpu')} "
            f"| {_pair(p, 'share')} | {_pair(p, 'client')} | {_pair(p, 'rss')} "
            f"| {_moto_rss(p)} |"
        )
    if not outcome.points:
        lines.append("| - | no point ran | | | | | | | | | |")
    return "\n".join(lines) + "\n"
