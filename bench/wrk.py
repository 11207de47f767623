"""Pull points driven by ``wrk``, a C load generator that needs less CPU per request than
any server under test, so a point measures the server rather than the generator.

A generated Lua script rotates the paths (one blob after another, as the Python
generator did) and adds the headers (``Authorization``); its ``done`` hook
prints the counters and latency percentiles on one line that is parsed here.
wrk's own CPU time comes from the kernel's accounting of the process
(``wait4`` rusage, the same counters as ``/proc/<pid>/stat``), so every point
says how busy the generator was.

wrk reads 8 KiB at a time and cannot parse a response to ``HEAD`` (it waits for
the body that ``Content-Length`` announces): HEAD points stay on the Python
generator. Its ``-d`` takes whole seconds only, so a run is stopped with SIGINT,
on which wrk stops cleanly and still reports.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import RunResult
from bench.targets import find_binary

# Bodies this large are counted by the bytes read, not by whole responses.
LARGE_BODY_BYTES = 1024 * 1024

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK-RESULT %d %d %d %d %d %d %d %d %.0f %.0f\\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkLoad:
    """GETs of ``paths`` in turn, each with ``headers``; ``body_bytes[i]`` is the body size of
    ``paths[i]`` (body throughput excludes response heads, as the Python generator's does)."""

    paths: Sequence[str]
    body_bytes: Sequence[int]
    headers: Mapping[str, str] = field(default_factory=dict)
    scheme: str = "http"


@dataclass(frozen=True)
class WrkRun:
    result: RunResult
    client_cpu_seconds: float


def available() -> bool:
    return find_binary("wrk") is not None


def lua_script(load: WrkLoad) -> str:
    """The script: JSON string literals are valid Lua string literals for ASCII text."""
    paths = ", ".join(json.dumps(p) for p in load.paths)
    headers = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in load.headers.items())
    return (
        f"local paths = {{{paths}}}\n"
        f"local headers = {{{headers}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i], headers)\n'
        "end\n" + _DONE
    )


def parse(stdout: str, load: WrkLoad) -> RunResult:
    line = next((x for x in stdout.splitlines() if x.startswith("WRK-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{stdout[-2000:]}")
    fields = [int(float(x)) for x in line.split()[1:]]
    requests, bytes_read, duration_us, connect, read, write, status, timeout, p50_us, p99_us = (
        fields
    )
    result = RunResult(seconds=duration_us / 1e6)
    errors = {"connect": connect, "read": read, "write": write, "timeout": timeout}
    errors["HTTP status >= 400"] = status
    for kind, count in errors.items():
        if count:
            result.error_kinds[f"wrk: {kind}"] = count
    result.errors = sum(errors.values())
    # wrk counts a response with status >= 400 as a request too; only successes count here.
    result.requests = max(0, requests - status)
    mean_body = sum(load.body_bytes) / len(load.body_bytes)
    result.body_bytes = round(result.requests * mean_body)
    if mean_body >= LARGE_BODY_BYTES:
        # Every byte read, bodies still in flight included: with 128 MiB at c = 256
        # (32 GiB in flight) a run ends before most responses do, and counting only
        # whole responses measured nothing. Heads are < 0.1% of such bodies.
        result.body_bytes = max(result.body_bytes, bytes_read)
    result.percentiles = (p50_us / 1e6, p99_us / 1e6)
    return result


def _run(argv: list[str], seconds: float, script: Path, lua: str) -> tuple[str, float]:
    """Write the script, run wrk for ``seconds`` (stopped by SIGINT); its stdout and CPU
    seconds."""
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(lua)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    assert proc.stdout is not None
    with proc.stdout:
        stdout = proc.stdout.read()
    # wait4, not Popen.wait: its rusage is the CPU time of exactly this process.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return stdout, usage.ru_utime + usage.ru_stime


async def run(
    host: str,
    port: int,
    load: WrkLoad,
    concurrency: int,
    seconds: float,
    workdir: Path,
    cpus: str | None,
) -> WrkRun:
    """One wrk thread (the generator gets one CPU, ``cpus``) on ``concurrency`` connections."""
    exe = find_binary("wrk")
    if exe is None:
        raise RuntimeError("wrk not found (Debian package wrk)")
    script = workdir / "rotate.lua"
    pin = ["taskset", "-c", cpus] if cpus is not None else []
    argv = [
        *pin,
        exe,
        "-t1",
        f"-c{concurrency}",
        f"-d{math.ceil(seconds) + 60}s",
        "--timeout",
        "60s",
        "-s",
        str(script),
        f"{load.scheme}://{host}:{port}/",
    ]
    stdout, cpu = await asyncio.to_thread(_run, argv, seconds, script, lua_script(load))
    return WrkRun(parse(stdout, load), cpu)
