"""``python -m bench.profile push|pull|head``: where registryd's CPU goes under one load.

``head`` is the per-request overhead: one-connection HEAD round trips of
registryd next to a bare aiohttp handler and nginx (``bench/roundtrip.py``).
``get`` is the server CPU of 1 MiB v2 Bearer GETs driven by wrk, registryd next
to nginx (``bench/getcost.py``). The rest of this describes ``push`` and ``pull``.

Starts registryd pinned to CPU 0 (the load generator on CPU 1, as in the
pinned section), runs the load, and reads every thread's user and system CPU
time from /proc before and after: the event-loop thread (HTTP, socket reads,
sendfile, Python), the executor threads (hashing, file writes, fsync) and
PostgreSQL. The sha256 share is what the digests must cost at the bytes moved
and this CPU's hashlib speed, calibrated on CPU 0 in the same run.

With ``perf`` installed, CPU 0 is also sampled system-wide and the samples
are split by process and shared object (libcrypto is OpenSSL's sha256, the
kernel is socket and file copies, libpython the interpreter). A Python
sampling profiler is not used for the split: py-spy reads each thread's
Python stack, and it put the digests, which run with the GIL released, at
~2% of the samples where their thread CPU time is ~65%.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench import getcost, io_floor, roundtrip, workloads
from bench.loadgen import Connection, Operation, run_load
from bench.targets import Server, start_registryd
from bench.workloads import MiB, UniqueLayers

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ThreadTimes:
    """CPU seconds per bucket: (user, system)."""

    buckets: dict[str, tuple[float, float]]


def bucket(server: Server, pid: int, tid: int) -> str:
    if pid != server.proc.pid and Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
        return "PostgreSQL"
    return "event-loop thread" if pid == tid else "executor threads"


def thread_times(server: Server) -> ThreadTimes:
    buckets: dict[str, tuple[float, float]] = {}
    for proc in server.tree():
        try:
            tasks = list(Path(f"/proc/{proc.pid}/task").iterdir())
            for task in tasks:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                name = bucket(server, proc.pid, int(task.name))
                user, system = buckets.get(name, (0.0, 0.0))
                buckets[name] = (user + int(fields[11]) / TICK, system + int(fields[12]) / TICK)
        except OSError:
            continue  # a process or thread that ended meanwhile
    return ThreadTimes(buckets)


def sha256_bytes_per_second(cpu: int) -> float:
    """hashlib's sha256 speed on ``cpu`` (1 MiB updates, as registryd does)."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        block, h = os.urandom(MiB), hashlib.sha256()
        started = time.perf_counter()
        for _ in range(256):
            h.update(block)
        return 256 * MiB / (time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, previous)


async def seed_and_operations(server: Server, kind: str) -> tuple[Iterator[Operation], int]:
    """Seed what the load needs; return its operations and the connection count."""
    if kind == "push":
        layers = UniqueLayers(16 * MiB, os.urandom(4).hex())
        await layers.prepare(200)
        return workloads.pushes("registryd", layers), 8
    blob = workloads.make_blob("profile-pull", 16 * MiB)
    conn = Connection("127.0.0.1", server.port)
    try:
        await workloads.seed_registryd(conn, [blob])
    finally:
        conn.close()
    return workloads.pulls("registryd", [blob]), 1


async def profile(kind: str, seconds: float, workdir: Path) -> str:
    hash_rate = sha256_bytes_per_second(0)
    io_rate = io_floor.seconds_per_byte(0, 1) if kind == "push" else 0.0
    os.sched_setaffinity(0, {1})
    server = start_registryd(workdir / "registryd", "0", 1)
    try:
        operations, concurrency = await seed_and_operations(server, kind)
        perf = start_perf(workdir / "perf.data", seconds)
        before = thread_times(server)
        result = await run_load("127.0.0.1", server.port, operations, concurrency, seconds, 10**6)
        after = thread_times(server)
        if perf is not None:
            perf.wait()
    finally:
        server.stop()
    megabytes = result.body_bytes / 1e6
    lines = [
        f"{kind} 16 MiB, c={concurrency}, 1 worker on CPU 0: "
        f"{megabytes / result.seconds:.0f} MB/s over {result.seconds:.1f} s, "
        f"{result.errors} errors; sha256 on CPU 0: {hash_rate / 1e6:.0f} MB/s",
        "",
        "| where | user CPU s/s | system CPU s/s | CPU ms per MB | share |",
        "|---|---:|---:|---:|---:|",
    ]
    deltas = {
        name: (
            user - before.buckets.get(name, (0.0, 0.0))[0],
            system - before.buckets.get(name, (0.0, 0.0))[1],
        )
        for name, (user, system) in after.buckets.items()
    }
    total = sum(user + system for user, system in deltas.values()) or 1e-9
    for name, (user, system) in sorted(deltas.items(), key=lambda kv: -sum(kv[1])):
        lines.append(
            f"| {name} | {user / result.seconds:.2f} | {system / result.seconds:.2f} "
            f"| {1000 * (user + system) / max(megabytes, 1e-9):.2f} "
            f"| {100 * (user + system) / total:.0f}% |"
        )
    if kind == "push":
        # Every pushed byte goes through two digests: the blob's and the v1 payload checksum.
        hashing = 2 * result.body_bytes / hash_rate
        lines.append(
            f"| of which the two sha256 digests (2 x bytes / hashlib speed) | - | - "
            f"| {1000 * hashing / max(megabytes, 1e-9):.2f} | {100 * hashing / total:.0f}% |"
        )
        moving = result.body_bytes * io_rate
        lines.append(
            "| of which socket -> file, fsync, drop (bench/io_floor.py) | - | - "
            f"| {1000 * moving / max(megabytes, 1e-9):.2f} | {100 * moving / total:.0f}% |"
        )
    lines.append(f"| total | - | - | {1000 * total / max(megabytes, 1e-9):.2f} | 100% |")
    if perf is not None:
        lines += ["", *perf_table(workdir / "perf.data")]
    return "\n".join(lines)


def start_perf(out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """``perf record`` of CPU 0 for ``seconds``, or None without perf."""
    exe = shutil.which("perf")
    if exe is None:
        return None
    argv = [exe, "record", "-C", "0", "-F", "499", "-o", str(out), "--", "sleep", str(seconds)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_table(data: Path, top: int = 8) -> list[str]:
    """CPU 0's samples by process and shared object, largest first."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--sort", "comm,dso"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = []
    for line in report.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].endswith("%") and not line.startswith("#"):
            rows.append(f"| {fields[1]} | `{fields[2]}` | {fields[0]} |")
    if not rows:
        return ["perf recorded no samples (perf_event_paranoid?)"]
    head = ["| process (CPU 0, perf) | shared object | share of samples |", "|---|---|---:|"]
    return head + rows[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument(
        "kind",
        choices=("push", "pull", "head", "get"),
        help="16 MiB pushes c=8, 16 MiB pulls c=1, HEAD round trips on one connection, "
        "or 1 MiB Bearer GETs next to nginx",
    )
    parser.add_argument(
        "--seconds", type=float, default=10, help="push and pull: run time; get: per round"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="get: wrk connections")
    parser.add_argument("--requests", type=int, default=5000, help="head: per row and round")
    parser.add_argument("--rounds", type=int, default=3, help="head, get: interleaved rounds")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("need at least 2 CPUs to pin server and load apart", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="registryd-profile-") as tmp:
        if args.kind == "head":
            table = uvloop.run(roundtrip.head_table(args.requests, args.rounds, Path(tmp)))
        elif args.kind == "get":
            table = uvloop.run(
                getcost.get_cost_table(Path(tmp), args.concurrency, args.seconds, args.rounds)
            )
        else:
            table = uvloop.run(profile(args.kind, args.seconds, Path(tmp)))
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
