"""Turning stored JSON into what pages show: pure functions, tolerant of any shape.

Manifests, configs and v1 image JSON come from clients; a field of the wrong type is
shown as absent rather than failing the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from registryd import jsonbody

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_digest(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part[:12]}" if hex_part else digest[:12]


def path_part(text: str) -> str:
    """A repository name, tag or digest as a URL path part (slashes of names kept)."""
    return quote(text, safe="/:")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [str(v) for v in _list(value)]


def string_map(value: Any) -> list[tuple[str, str]]:
    return sorted((str(k), str(v)) for k, v in _dict(value).items())


def loads_object(body: bytes | None) -> dict[str, Any]:
    return jsonbody.stored_object(body) or {}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int | None
    platform: str | None = None
    artifact_type: str | None = None
    annotations: list[tuple[str, str]] = field(default_factory=list)


def platform_text(value: Any) -> str | None:
    p = _dict(value)
    parts = [_str(p.get("os")), _str(p.get("architecture")), _str(p.get("variant"))]
    text = "/".join(part for part in parts if part)
    return text or None


def descriptors(value: Any) -> list[Descriptor]:
    found = []
    for item in _list(value):
        d = _dict(item)
        digest = _str(d.get("digest"))
        if digest is None:
            continue
        found.append(
            Descriptor(
                media_type=_str(d.get("mediaType")) or "",
                digest=digest,
                size=_int(d.get("size")),
                platform=platform_text(d.get("platform")),
                artifact_type=_str(d.get("artifactType")),
                annotations=string_map(d.get("annotations")),
            )
        )
    return found


def index_platforms(index: dict[str, Any] | None) -> list[Descriptor]:
    return descriptors(_dict(index).get("manifests"))


@dataclass(frozen=True)
class HistoryEntry:
    created: str | None
    created_by: str | None
    comment: str | None
    empty_layer: bool


@dataclass(frozen=True)
class ImageConfig:
    """What an image runs: the fields of an OCI/Docker image config (or v1 image JSON)."""

    platform: str | None = None
    created: str | None = None
    author: str | None = None
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    working_dir: str | None = None
    user: str | None = None
    env: list[str] = field(default_factory=list)
    labels: list[tuple[str, str]] = field(default_factory=list)
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)


def image_config(data: dict[str, Any]) -> ImageConfig:
    # OCI and Docker v2 configs say "config"; v1 image JSON says "config" or "container_config".
    run = _dict(data.get("config")) or _dict(data.get("container_config"))
    history = [
        HistoryEntry(
            created=_str(_dict(h).get("created")),
            created_by=_str(_dict(h).get("created_by")),
            comment=_str(_dict(h).get("comment")),
            empty_layer=_dict(h).get("empty_layer") is True,
        )
        for h in _list(data.get("history"))
    ]
    return ImageConfig(
        platform=platform_text(data),
        created=_str(data.get("created")),
        author=_str(data.get("author")),
        entrypoint=_strings(run.get("Entrypoint")),
        cmd=_strings(run.get("Cmd")),
        working_dir=_str(run.get("WorkingDir")),
        user=_str(run.get("User")),
        env=_strings(run.get("Env")),
        labels=string_map(run.get("Labels")),
        exposed_ports=sorted(str(k) for k in _dict(run.get("ExposedPorts"))),
        volumes=sorted(str(k) for k in _dict(run.get("Volumes"))),
        history=history,
    )


@dataclass(frozen=True)
class PullCommand:
    client: str
    command: str


def pull_commands(
    host: str, name: str, reference: str, *, plain_http: bool, v2: bool
) -> list[PullCommand]:
    """Copy-ready commands; ``reference`` is a tag or a digest."""
    sep = "@" if ":" in reference else ":"
    image = f"{host}/{name}{sep}{reference}"
    commands = [PullCommand("docker", f"docker pull {image}")]
    if not v2:
        return commands  # only docker's v1 client speaks the v1 API
    tls = " --tls-verify=false" if plain_http else ""
    local = name.rsplit("/", 1)[-1]
    commands += [
        PullCommand("podman", f"podman pull{tls} {image}"),
        PullCommand(
            "skopeo",
            f"skopeo copy{' --src-tls-verify=false' if plain_http else ''} "
            f"docker://{image} oci:{local}",
        ),
        PullCommand("ctr", f"ctr images pull{' --plain-http' if plain_http else ''} {image}"),
    ]
    return commands
