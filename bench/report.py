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
    return f"{value:.2f}x"


def _errors(point: Point, target: str) -> str:
    errors = point.errors(target)
    return f" **({errors} FAILED)**" if errors else ""


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
        latencies = [lat for s in samples for lat in s.result.latencies]
        rows.append(
            f"| {point.section} | {point.label} | {point.concurrency} | {target} "
            f"| {min(values):.0f} / {statistics.median(values):.0f} "
            f"/ {max(values):.0f} {point.unit} "
            f"| {statistics.median(s.req_per_s for s in samples):.0f} "
            f"| {statistics.median(s.mb_per_s for s in samples):.0f} "
            f"| {_percentile(latencies, 0.5) * 1000:.1f} "
            f"/ {_percentile(latencies, 0.99) * 1000:.1f} "
            f"| {statistics.median(s.server_cpu for s in samples) * 100:.0f}% "
            f"| {max(s.peak_rss_bytes for s in samples) / 1024**2:.0f} "
            f"| {statistics.median(s.client_cpu for s in samples) * 100:.0f}% "
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
        f"| point | c | {' | '.join(configs)} | ratio |",
        f"|---|---:|{'---:|' * len(configs)}---:|",
    ]
    for p in points:
        values = [p.median(c) for c in configs]
        shown = [
            "-" if v is None else f"{v:.0f} {p.unit}{_errors(p, c)}"
            for v, c in zip(values, configs, strict=True)
        ]
        first, last = values[0], values[-1]
        ratio = "-" if not first or last is None else f"{last / first:.2f}x"
        if p.failed:
            ratio = f"INVALID ({ratio} over failed requests)"
        lines.append(f"| {p.label} | {p.concurrency} | {' | '.join(shown)} | {ratio} |")
    return lines


def render(
    points: list[Point], *, command: str, machine: str, plan: str, minutes: float, wrk: str
) -> str:
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
    ]
    if wrk:
        lines.append(f"- Load generator cross-check with wrk (8 KiB reads): {wrk}")
    failed = [p for p in points if p.failed]
    if failed:
        lines.append(
            f"- **{len(failed)} point(s) had failed requests; their numbers and ratios are "
            "not valid (see Failures).**"
        )
    else:
        lines.append("- Every request of every point succeeded.")
    lines += [
        "",
        "## Ratios (median of runs)",
        "",
        "| section | point | c | registryd | distribution | nginx | registryd/distribution "
        "| registryd/nginx |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        if p.section in SELF_COMPARED:
            continue
        targets = ("registryd", *REFERENCES)
        shown = [
            "-" if (v := p.median(t)) is None else f"{v:.0f} {p.unit}{_errors(p, t)}"
            for t in targets
        ]
        lines.append(
            f"| {p.section} | {p.label} | {p.concurrency} | {' | '.join(shown)} "
            f"| {_ratio(p, 'distribution')} | {_ratio(p, 'nginx')} |"
        )
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
