"""In-process hash states of upload sessions, so a commit need not re-read the bytes.

Only a cache: the session itself lives in the database and the storage. A state
is valid for exactly the session size it was saved with; bytes below a session's
recorded size never change, so any state at that size is the right one. When a
chunk went to another replica (or this process restarted) there is no state and
the commit re-hashes the stored bytes.
"""

from __future__ import annotations

from registryd.digest import Hasher
from registryd.lru import Lru

# Enough for every session a busy registry has in flight; the oldest go first.
MAX_STATES = 4096


class UploadHashes:
    def __init__(self, max_states: int = MAX_STATES) -> None:
        self._states: Lru[str, tuple[int, Hasher]] = Lru(max_states)

    def take(self, upload_id: str, size_bytes: int) -> Hasher | None:
        """A private copy of the state after ``size_bytes`` bytes, or None if unknown."""
        if size_bytes == 0:
            return Hasher("sha256")
        saved = self._states.peek(upload_id)
        if saved is None or saved[0] != size_bytes:
            return None
        return saved[1].copy()

    def save(self, upload_id: str, size_bytes: int, hasher: Hasher | None) -> None:
        self._states.pop(upload_id)
        if hasher is not None:
            self._states.put(upload_id, (size_bytes, hasher))

    def drop(self, upload_id: str) -> None:
        self._states.pop(upload_id)
