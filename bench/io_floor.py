"""What moving a pushed byte costs before any hashing: from a socket into a file.

A push's floor is not only its digests: every byte is copied out of the socket
and into the page cache, and each blob is fsynced (and its pages dropped, as
registryd does with ``drop_written_pages``). This measures exactly that, with
plain syscalls and no Python per byte, on the CPU the server uses, so that the
profile can split registryd's CPU per MB into digests, unavoidable I/O and the
rest (its own overhead).
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from pathlib import Path

MiB = 1024 * 1024
BLOB_BYTES = 16 * MiB


def _send(sock: socket.socket, total: int, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    block = os.urandom(MiB)
    with sock:
        for _ in range(total // MiB):
            sock.sendall(block)


def seconds_per_byte(cpu: int, sender_cpu: int, total: int = 512 * MiB) -> float:
    """Receiver CPU seconds per byte: recv_into 1 MiB, write, fsync + drop every 16 MiB."""
    receiver, sender = socket.socketpair()
    previous = os.sched_getaffinity(0)
    thread = threading.Thread(target=_send, args=(sender, total, sender_cpu))
    os.sched_setaffinity(0, {cpu})
    try:
        with receiver, tempfile.TemporaryDirectory() as tmp:
            thread.start()
            view = memoryview(bytearray(MiB))
            started = time.thread_time()
            received, blob, fd = 0, 0, -1
            while True:
                n = receiver.recv_into(view)
                if not n:
                    break
                if fd < 0:
                    fd = os.open(Path(tmp) / f"blob{blob}", os.O_WRONLY | os.O_CREAT, 0o600)
                os.write(fd, view[:n])
                received += n
                if received // BLOB_BYTES > blob:  # a blob is complete
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    os.close(fd)
                    fd, blob = -1, blob + 1
            if fd >= 0:
                os.close(fd)
            spent = time.thread_time() - started
    finally:
        thread.join()
        os.sched_setaffinity(0, previous)
    return spent / max(received, 1)
