"""prometheus-client's fork check reads a process id kept by a fork hook: a forked worker
must see its own id (or it would write into its parent's sample files)."""

from __future__ import annotations

import os

from registryd.ops.metrics import _PROCESS_ID


def test_the_kept_process_id_follows_a_fork() -> None:
    assert _PROCESS_ID.get() == os.getpid()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, f"{_PROCESS_ID.get()} {os.getpid()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        kept, actual = os.read(read, 64).decode().split()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert kept == actual
    assert int(kept) != os.getpid()
