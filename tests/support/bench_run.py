"""Run ``python -m bench`` as a test does: bounded in time, leaving no server behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_bench(argv: list[str], timeout_seconds: float = 110) -> subprocess.CompletedProcess[str]:
    """``python -m bench *argv`` without REGISTRYD_* settings from the environment.

    The bench runs in a process group of its own: when it runs out of time the whole
    group is killed, or the servers it started would outlive it as orphans.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRYD_")}
    with subprocess.Popen(
        [sys.executable, "-m", "bench", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
