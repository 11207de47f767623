"""The report leads each section with server CPU per GB and marks generator-bound values."""

from __future__ import annotations

from bench import report
from bench.loadgen import RunResult


def _sample(mb: float, server_cpu: float, client_cpu: float, errors: int = 0) -> report.Sample:
    result = RunResult(requests=10, body_bytes=int(mb * 1e6), errors=errors, seconds=1.0)
    if errors:
        result.error_kinds["wrk: read"] = errors
    return report.Sample(result, server_cpu, client_cpu, 0)


def _render(*points: report.Point) -> str:
    return report.render(list(points), command="c", machine="m", plan="p", minutes=0.0)


def test_server_cpu_per_gb_leads_the_section() -> None:
    point = report.Point("pull v2, Bearer", "1 MiB", 64, "MB/s")
    point.samples["registryd"] = [_sample(2000, 1.0, 0.5)]  # 1 CPU-s for 2 GB
    point.samples["nginx"] = [_sample(4000, 0.4, 0.5)]  # 0.4 CPU-s for 4 GB
    text = _render(point)
    section = text.index("### pull v2, Bearer")
    cpu = text.index("| 1 MiB | 64 | 0.50 | - | 0.10 | - | 5.00x |")
    ratios = text.index("| pull v2, Bearer | 1 MiB | 64 | 2000 MB/s | - | 4000 MB/s | - | 0.50x |")
    assert section < cpu < ratios


def test_metadata_cpu_is_per_thousand_requests() -> None:
    point = report.Point("metadata v2, Bearer", "manifest GET", 64, "req/s")
    point.samples["registryd"] = [_sample(0, 0.5, 0.2)]  # 10 req/s at half a core
    text = _render(point)
    assert "per 1,000 requests" in text
    assert "| manifest GET | 64 | 50.00 | - | - |" in text


def test_a_busy_generator_marks_the_value_and_the_ratio_client_bound() -> None:
    point = report.Point("pull v2, Bearer", "1 MiB", 64, "MB/s")
    point.samples["registryd"] = [_sample(2000, 1.0, 0.95)]
    point.samples["nginx"] = [_sample(3000, 0.2, 0.5)]
    text = _render(point)
    row = next(line for line in text.splitlines() if line.startswith("| pull v2, Bearer | 1 MiB"))
    assert "2000 MB/s client-bound" in row
    assert "3000 MB/s |" in row  # nginx's generator was not saturated
    assert "0.67x (client-bound)" in row


def test_an_idle_generator_marks_nothing() -> None:
    point = report.Point("pull v2, Bearer", "1 MiB", 64, "MB/s")
    point.samples["registryd"] = [_sample(2000, 1.0, 0.89)]
    point.samples["nginx"] = [_sample(3000, 0.2, 0.5)]
    assert "client-bound" not in _render(point).split("## Every point")[0].split("Auth:")[1]


def test_rollout_table_compares_time_and_p99_with_distribution() -> None:
    point = report.Point(report.ROLLOUT, "2 nodes", 2, "MB/s")
    ours = RunResult(requests=2, body_bytes=10**9, seconds=2.0, latencies=[1.0, 2.0])
    theirs = RunResult(requests=2, body_bytes=10**9, seconds=8.0, latencies=[4.0, 8.0])
    point.samples["registryd"] = [report.Sample(ours, 0.5, 0.1, 0)]
    point.samples["distribution"] = [report.Sample(theirs, 0.5, 0.1, 0)]
    text = _render(point)
    assert "## Rollout" in text
    row = next(line for line in text.splitlines() if line.startswith("| 2 | registryd |"))
    assert "| 2.00 |" in row  # all nodes done
    assert "| 1.0 |" in row  # server CPU seconds in total
    assert "0.25x / 0.25x" in row


def test_a_failed_rollout_node_invalidates_the_comparison() -> None:
    point = report.Point(report.ROLLOUT, "2 nodes", 2, "MB/s")
    ours = RunResult(requests=1, body_bytes=10**9, errors=1, seconds=2.0, latencies=[1.0])
    ours.error_kinds["HttpError: HTTP 401"] = 1
    theirs = RunResult(requests=2, body_bytes=10**9, seconds=8.0, latencies=[4.0, 8.0])
    point.samples["registryd"] = [report.Sample(ours, 0.5, 0.1, 0)]
    point.samples["distribution"] = [report.Sample(theirs, 0.5, 0.1, 0)]
    text = _render(point)
    row = next(line for line in text.splitlines() if line.startswith("| 2 | registryd |"))
    assert "(1 FAILED)" in row
    assert "INVALID" in row
