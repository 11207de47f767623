"""A bounded LRU of complete v1 images, so a layer GET needs no database round-trip.

Only complete images are kept: a complete image is immutable (v1 spec §6; no
writer changes its row), so an entry can only go stale when the image is
deleted by garbage collection, or sent back to ``uploading`` by ``scrub
--repair``. Each worker process has its own cache, and every process learns of
those rare changes from PostgreSQL (``gc/image_notices.py`` calls ``forget``,
or disables the cache while it cannot listen). A layer whose blob has vanished
is forgotten on the spot too (see ``domain.images``).
"""

from __future__ import annotations

from registryd.db.v1_image_queries import ImageRow
from registryd.lru import Lru
from registryd.names import ImageId


class ImageCache:
    """At most ``max_entries`` images holding at most ``max_json_bytes`` of JSON."""

    def __init__(self, max_entries: int = 8192, max_json_bytes: int = 16 * 1024**2) -> None:
        self._entries: Lru[ImageId, ImageRow] = Lru(
            max_entries, weight=lambda image: len(image.json), max_weight=max_json_bytes
        )
        self._max_json_bytes = max_json_bytes
        self._enabled = True
        # Bumped by every forget: a read that began before one never stores its answer.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def enable(self) -> None:
        """Start using the cache, empty (what happened while it was off is unknown)."""
        self.clear()
        self._enabled = True

    def disable(self) -> None:
        """Bypass the cache (every ``get`` misses, every ``put`` is dropped) and empty it."""
        self._enabled = False
        self.clear()

    def get(self, image_id: ImageId) -> ImageRow | None:
        if not self._enabled:
            return None
        return self._entries.get(image_id)

    def put(self, image: ImageRow, generation: int | None = None) -> None:
        """Remember ``image`` if it is complete (anything else is refused, by design) and,
        when the caller read it at ``generation``, nothing was forgotten since."""
        if not self._enabled or (generation is not None and generation != self.generation):
            return
        if not image.is_complete or len(image.json) > self._max_json_bytes // 16:
            return
        self._entries.put(image.image_id, image)

    def forget(self, image_id: ImageId) -> None:
        self.generation += 1
        self._entries.pop(image_id)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
