"""Statistics per point and the Markdown report: min/median/max, percentiles and ratios."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from bench.loadgen import RunResult

REFERENCES = ("distribution", "nginx")
# Sections that compare registryd configurations with each other, not with references,
# each rendered as its own table under this title.
SCALING = "scaling"
AUTH = "auth"
SELF_COMPARED = {
    SCALING: "Worker scaling (registryd alone, medians)",
    AUTH: "Access checks on the pull path (registryd alone, pinned, medians)",
}
ROLLOUT = "rollout"
# A load generator this busy (CPU seconds per second) may be what limits the point.
CLIENT_BOUND_CPU = 0.9


@dataclass
class Sample:
    result: RunResult
    server_cpu: float  # CPU seconds per second, whole process tree
    client_cpu: float
    peak_rss_bytes: int

    @property
    def mb_per_s(self) -> float:
        return self.result.body_bytes / self.result.seconds / 1e6 if self.result.seconds else 0.0

    @property
    def req_per_s(self) -> float:
        return self.result.requests / self.result.seconds if self.result.seconds else 0.0

    @property
    def client_bound(self) -> bool:
        return self.client_cpu >= CLIENT_BOUND_CPU

    def server_cpu_per_unit(self, unit: str) -> float | None:
        """Server CPU seconds per GB moved ("MB/s" points) or per 1,000 requests."""
        rate = self.mb_per_s / 1000 if unit == "MB/s" else self.req_per_s / 1000
        return self.server_cpu / rate if rate else None


@dataclass
class Point:
    section: str
    label: str
    concurrency: int
    unit: str  # "MB/s" or "req/s": what the ratio compares
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def value(self, sample: Sample) -> float:
        return sample.mb_per_s if self.unit == "MB/s" else sample.req_per_s

    def median(self, target: str) -> float | None:
        samples = self.samples.get(target)
        if not samples:
            return None
        return statistics.median(self.value(s) for s in samples)

    def client_bound(self, target: str) -> bool:
        """Whether the generator was >= 90% busy in most runs of ``target``."""
        samples = self.samples.get(target, [])
        return bool(samples) and 2 * sum(s.client_bound for s in samples) > len(samples)

    def server_cpu_per_unit(self, target: str) -> float | None:
        values = [
            v for s in self.samples.get(target, []) if (v := s.server_cpu_per_unit(self.unit))
        ]
        return statistics.median(values) if values else None

    def errors(self, target: str) -> int:
        return sum(s.result.errors for s in self.samples.get(target, []))

    def error_kinds(self, target: str) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for sample in self.samples.get(target, []):
            kinds.update(sample.result.error_kinds)
        return kinds

    @property
    def failed(self) -> bool:
        """Whether any request of any target failed: then no number of the point is valid."""
        return any(self.errors(t) for t in self.samples)

    def ratio(self, reference: str) -> float | None:
        ours, theirs = self.median("registryd"), self.median(reference)
        if ours is None or not theirs:
            return None
        return ours / theirs


def size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ratio(point: Point, reference: str) -> str:
    value = point.ratio(reference)
    if value is None:
        return "-"
    if point.errors("registryd") or point.errors(reference):
        return f"INVALID ({value:.2f}x over failed requests)"
    if point.client_bound("registryd") or point.client_bound(reference):
        return f"{value:.2f}x (client-bound)"
    return f"{value:.2f}x"


def _errors(point: Point, target: str) -> str:
    errors = point.errors(target)
    return f" **({errors} FAILED)**" if errors else ""


def _marks(point: Point, target: str) -> str:
    """After a value: its failures, and whether the load generator may have bounded it."""
    return _errors(point, target) + (" client-bound" if point.client_bound(target) else "")


def _latency_ms(samples: list[Sample]) -> tuple[float, float]:
    """p50 and p99 in ms: pooled over every request, or (wrk) the median of each run's."""
    reported = [s.result.percentiles for s in samples if s.result.percentiles is not None]
    if reported:
        return (
            statistics.median(p[0] for p in reported) * 1000,
            statistics.median(p[1] for p in reported) * 1000,
        )
    latencies = [lat for s in samples for lat in s.result.latencies]
    return _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000


def progress(point: Point) -> str:
    parts = [
        f"{t} {m:.0f}{f' ({point.errors(t)} FAILED)' if point.errors(t) else ''}"
        for t in point.samples
        if (m := point.median(t)) is not None
    ]
    lines = [
        f"[{point.section}] {point.label} c={point.concurrency}: {', '.join(parts)} "
        f"{point.unit}; /dist {_ratio(point, 'distribution')}, /nginx {_ratio(point, 'nginx')}"
    ]
    for target in point.samples:
        for kind, count in point.error_kinds(target).most_common(5):
            lines.append(f"  FAILED {target}: {count} x {kind}")
    return "\n".join(lines)


def _detail_rows(point: Point) -> list[str]:
    rows = []
    for target, samples in point.samples.items():
        values = [point.value(s) for s in samples]
        p50, p99 = _latency_ms(samples)
        rows.append(
            f"| {point.section} | {point.label} | {point.concurrency} | {target} "
            f"| {min(values):.0f} / {statistics.median(values):.0f} "
            f"/ {max(values):.0f} {point.unit} "
            f"| {statistics.median(s.req_per_s for s in samples):.0f} "
            f"| {statistics.median(s.mb_per_s for s in samples):.0f} "
            f"| {p50:.1f} / {p99:.1f} "
            f"| {statistics.median(s.server_cpu for s in samples) * 100:.0f}% "
            f"| {max(s.peak_rss_bytes for s in samples) / 1024**2:.0f} "
            f"| {statistics.median(s.client_cpu for s in samples) * 100:.0f}%"
            f"{' client-bound' if point.client_bound(target) else ''} "
            f"| {sum(s.result.requests for s in samples)}{_errors(point, target)} |"
        )
    return rows


def _self_table(title: str, points: list[Point]) -> list[str]:
    """registryd next to itself: each configuration, and the last one over the first."""
    if not points:
        return []
    configs = list(points[0].samples)
    lines = [
        "",
        f"## {title}",
        "",
        "Server CPU seconds per GB (per 1,000 requests for req/s points), median of runs:",
        "",
        f"| point | c | {' | '.join(configs)} |",
        f"|---|---:|{'---:|' * len(configs)}",
    ]
    for p in points:
        cells = " | ".join(_cpu_cell(p, c) for c in configs)
        lines.append(f"| {p.label} | {p.concurrency} | {cells} |")
    lines += [
        "",
        f"| point | c | {' | '.join(configs)} | ratio |",
        f"|---|---:|{'---:|' * len(configs)}---:|",
    ]
    for p in points:
        values = [p.median(c) for c in configs]
        shown = [
            "-" if v is None else f"{v:.0f} {p.unit}{_marks(p, c)}"
            for v, c in zip(values, configs, strict=True)
        ]
        first, last = values[0], values[-1]
        ratio = "-" if not first or last is None else f"{last / first:.2f}x"
        if p.failed:
            ratio = f"INVALID ({ratio} over failed requests)"
        lines.append(f"| {p.label} | {p.concurrency} | {' | '.join(shown)} | {ratio} |")
    return lines


def _cpu_cell(point: Point, target: str) -> str:
    value = point.server_cpu_per_unit(target)
    return "-" if value is None else f"{value:.2f}"


def _cpu_ratio(point: Point, reference: str) -> str:
    ours, theirs = point.server_cpu_per_unit("registryd"), point.server_cpu_per_unit(reference)
    return "-" if ours is None or not theirs else f"{ours / theirs:.2f}x"


def _section_tables(section: str, points: list[Point]) -> list[str]:
    """A section: server CPU per unit first (it does not depend on the load generator),
    then throughput and ratios."""
    units = sorted({p.unit for p in points})
    per = " / ".join("GB" if u == "MB/s" else "1,000 requests" for u in units)
    targets = ("registryd", *REFERENCES)
    lines = [
        "",
        f"### {section}",
        "",
        f"Server CPU seconds per {per} (median of runs; lower is better):",
        "",
        "| point | c | registryd | distribution | nginx | registryd/distribution "
        "| registryd/nginx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        cells = " | ".join(_cpu_cell(p, t) for t in targets)
        lines.append(
            f"| {p.label} | {p.concurrency} | {cells} "
            f"| {_cpu_ratio(p, 'distribution')} | {_cpu_ratio(p, 'nginx')} |"
        )
    lines += [
        "",
        "| section | point | c | registryd | distribution | nginx | registryd/distribution "
        "| registryd/nginx |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        shown = [
            "-" if (v := p.median(t)) is None else f"{v:.0f} {p.unit}{_marks(p, t)}"
            for t in targets
        ]
        lines.append(
            f"| {p.section} | {p.label} | {p.concurrency} | {' | '.join(shown)} "
            f"| {_ratio(p, 'distribution')} | {_ratio(p, 'nginx')} |"
        )
    return lines


def _rollout_table(points: list[Point]) -> list[str]:
    """Nodes pulling one image at once: time until all have it, per-node times, CPU."""
    if not points:
        return []
    lines = [
        "",
        "## Rollout (N nodes pull one image at once, whole v2 flow with the token request)",
        "",
        "| nodes | target | all nodes done s | node p50 / p99 s | server CPU s (total) "
        "| server CPU s per GB | client CPU | nodes done | vs distribution: all done / p99 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        ref = p.samples.get("distribution", [None])[0]
        for target, samples in p.samples.items():
            s = samples[0]
            nodes = s.result.latencies
            p50, p99 = _percentile(nodes, 0.5), _percentile(nodes, 0.99)
            versus = "-"
            if ref is not None and target != "distribution" and ref.result.latencies:
                versus = (
                    f"{s.result.seconds / ref.result.seconds:.2f}x / "
                    f"{p99 / _percentile(ref.result.latencies, 0.99):.2f}x"
                )
            if p.errors(target) or (ref is not None and ref.result.errors):
                versus = f"INVALID ({versus} over failed pulls)" if versus != "-" else "-"
            cpu_per_gb = s.server_cpu_per_unit("MB/s")
            lines.append(
                f"| {p.concurrency} | {target} | {s.result.seconds:.2f} "
                f"| {p50:.2f} / {p99:.2f} | {s.server_cpu * s.result.seconds:.1f} "
                f"| {'-' if cpu_per_gb is None else f'{cpu_per_gb:.2f}'} "
                f"| {s.client_cpu * 100:.0f}%{' client-bound' if s.client_bound else ''} "
                f"| {s.result.requests}{_errors(p, target)} | {versus} |"
            )
    return lines


def render(points: list[Point], *, command: str, machine: str, plan: str, minutes: float) -> str:
    lines = [
        "# registryd benchmark results",
        "",
        f"- Command: `{command}`",
        f"- Machine: {machine}",
        f"- Plan: `{plan}`",
        f"- Wall time: {minutes:.1f} min",
        "- Pinned sections: every server (and what it starts, e.g. registryd's PostgreSQL) "
        "on CPU 0 with `taskset -c 0`, the load generator on CPU 1. Ratios compare medians "
        "of the same interleaved run.",
        "- Load generators: GETs are driven by `wrk` (one thread; a Lua script rotates the "
        "paths and adds the Authorization header); pushes, HEADs (which wrk cannot parse) and "
        "the rollout by the Python generator (`bench/loadgen.py`). Client CPU is the "
        "generator's own; a value marked `client-bound` had its generator >= 90% busy, so it "
        "is a lower bound for that server, and so is a ratio marked `client-bound`. Each "
        "section leads with the server's CPU per GB (per 1,000 requests for metadata), which "
        "does not depend on the generator.",
        "- Auth: registryd runs in `token` mode in the v2 rows, with a Bearer JWT from "
        "`/v2/token` (fetched before each run, off the clock), in `none` mode in the v1 rows as "
        "in earlier runs; distribution runs without auth (its token auth needs an external "
        "token server).",
    ]
    failed = [p for p in points if p.failed]
    if failed:
        lines.append(
            f"- **{len(failed)} point(s) had failed requests; their numbers and ratios are "
            "not valid (see Failures).**"
        )
    else:
        lines.append("- Every request of every point succeeded.")
    lines += ["", "## Ratios (median of runs)"]
    sections = list(
        dict.fromkeys(
            p.section for p in points if p.section not in SELF_COMPARED and p.section != ROLLOUT
        )
    )
    for section in sections:
        lines += _section_tables(section, [p for p in points if p.section == section])
    lines += _rollout_table([p for p in points if p.section == ROLLOUT])
    for section, title in SELF_COMPARED.items():
        lines += _self_table(title, [p for p in points if p.section == section])
    lines += [
        "",
        "## Every point",
        "",
        "min / median / max over the runs; req/s and MB/s are medians; latency percentiles pool "
        "every request of the point; server CPU is the whole process tree (1.0 = one core); "
        "peak RSS is the largest VmHWM of any one server process during the point; client CPU "
        "is the load generator's own.",
        "",
        "| section | point | c | target | min / median / max | req/s | MB/s | p50 / p99 ms "
        "| server CPU | peak RSS MiB | client CPU | requests |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines += _detail_rows(p)
    if failed:
        lines += ["", "## Failures", "", "| section | point | c | target | failures |"]
        lines.append("|---|---|---:|---|---|")
        for p in failed:
            for target in p.samples:
                kinds = "; ".join(f"{n} x {k}" for k, n in p.error_kinds(target).most_common(5))
                if kinds:
                    lines.append(
                        f"| {p.section} | {p.label} | {p.concurrency} | {target} | {kinds} |"
                    )
    return "\n".join(lines) + "\n"
