"""A bounded LRU of complete v1 images, so a layer GET needs no database round-trip.

Only complete images are kept: a complete image is immutable (v1 spec §6; its
row never changes and never returns to ``uploading``), so an entry can never be
stale while the image exists. Each worker process has its own cache; nothing
needs to be shared because nothing is ever updated in place. Images are not
deleted today; whoever deletes one must ``forget`` it, and a layer whose blob
has vanished is forgotten on the spot (see ``domain.images``).
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

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, image_id: ImageId) -> ImageRow | None:
        return self._entries.get(image_id)

    def put(self, image: ImageRow) -> None:
        """Remember ``image`` if it is complete (anything else is refused, by design)."""
        if not image.is_complete or len(image.json) > self._max_json_bytes // 16:
            return
        self._entries.put(image.image_id, image)

    def forget(self, image_id: ImageId) -> None:
        self._entries.pop(image_id)
