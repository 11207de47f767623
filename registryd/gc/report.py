"""What one collection removed (or, in a dry run, would remove), and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass, field

# Longest list printed per kind; the counts are always complete.
MAX_LISTED = 1000


@dataclass
class Report:
    dry_run: bool = False
    # Retention: "repository:tag" deleted, by rule (its repositories glob).
    tags: dict[str, list[str]] = field(default_factory=dict)
    manifests: list[str] = field(default_factory=list)  # "repository@digest"
    v1_images: list[str] = field(default_factory=list)
    links: int = 0
    blobs: list[tuple[str, int]] = field(default_factory=list)  # (digest, size_bytes)
    files_removed: int = 0
    bytes_freed: int = 0  # of the files removed by this run
    uploads: int = 0
    upload_bytes: int = 0
    seconds: float = 0.0
    # False when the run stopped at gc_max_seconds with reviews still due.
    finished: bool = True

    @property
    def blob_bytes(self) -> int:
        return sum(size for _, size in self.blobs)

    def counts(self) -> dict[str, int | float | bool]:
        """For the log line and the metrics."""
        return {
            "dry_run": self.dry_run,
            "tags": sum(len(t) for t in self.tags.values()),
            "manifests": len(self.manifests),
            "v1_images": len(self.v1_images),
            "links": self.links,
            "blobs": len(self.blobs),
            "blob_bytes": self.blob_bytes,
            "files_removed": self.files_removed,
            "bytes_freed": self.bytes_freed,
            "uploads": self.uploads,
            "upload_bytes": self.upload_bytes,
            "seconds": round(self.seconds, 3),
            "finished": self.finished,
        }

    def render(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines: list[str] = []
        for rule, tags in self.tags.items():
            lines.append(f"retention {rule!r}: {verb} {len(tags)} tag(s)")
            lines += _listed("  tag", tags)
        lines.append(f"{verb} {len(self.manifests)} manifest(s)")
        lines += _listed("  manifest", self.manifests)
        lines.append(f"{verb} {len(self.v1_images)} v1 image(s)")
        lines += _listed("  v1 image", self.v1_images)
        lines.append(f"{verb} {self.links} repository blob link(s)")
        lines.append(f"{verb} {len(self.blobs)} blob(s), {self.blob_bytes} bytes")
        lines += _listed("  blob", [f"{d} {size}" for d, size in self.blobs])
        if not self.dry_run:
            lines.append(f"removed {self.files_removed} blob file(s), {self.bytes_freed} bytes")
        lines.append(f"{verb} {self.uploads} expired upload session(s), {self.upload_bytes} bytes")
        state = "finished" if self.finished else "stopped at gc_max_seconds; the next run resumes"
        lines.append(f"{state} in {self.seconds:.2f}s")
        return "\n".join(lines)


def _listed(label: str, items: list[str]) -> list[str]:
    lines = [f"{label} {item}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"{label} ... and {len(items) - MAX_LISTED} more")
    return lines
