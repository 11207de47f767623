"""Settings: parsed once from a TOML file, ``REGISTRYD_*`` variables and command-line flags.

Precedence, lowest to highest: built-in default, config file (``--config`` or
``REGISTRYD_CONFIG``), environment variable, flag. This is the only module
that reads ``os.environ``. A bad value raises ``ConfigError`` naming the
setting where it was given (file key, variable or flag), and start-up stops there.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "REGISTRYD_"
# Names the TOML file; not a setting itself.
CONFIG_FILE_VAR = ENV_PREFIX + "CONFIG"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMATS = ("auto", "json", "text")


class ConfigError(ValueError):
    """A setting has a value registryd cannot start with."""


# A mirrored namespace must be something no account can be named (a username is
# a namespace its owner writes): a registry's host name such as "docker.io".
_USERNAME_LIKE_RE = re.compile(r"^[a-z0-9_]{4,30}$")
_MIRROR_NAMESPACE_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
# Hosts that serve Docker Hub, whose one-segment names ("alpine") live in "library/".
_DOCKER_HUB_HOSTS = frozenset(
    {"docker.io", "registry-1.docker.io", "index.docker.io", "registry.hub.docker.com"}
)
_UPSTREAM_KEYS = frozenset(
    {
        "namespace",
        "url",
        "username",
        "password",
        "password_file",
        "tag_ttl_seconds",
        "connect_timeout_seconds",
        "read_timeout_seconds",
        "library_prefix",
        "serve_unprefixed",
        "cache_max_bytes",
        "cache_max_age_seconds",
    }
)


@dataclass(frozen=True)
class Upstream:
    """A registry mirrored under a local namespace (pull-through cache)."""

    namespace: str
    url: str  # scheme://host[:port], no trailing slash
    username: str | None = None
    # Never in a repr: settings are logged and printed by ``config check``.
    password: str | None = field(default=None, repr=False)
    # A tag's manifest is served from the cache this long before it is revalidated.
    tag_ttl_seconds: float = 300.0
    connect_timeout_seconds: float = 10.0
    # Longest silence while reading an upstream answer (a stalled download fails).
    read_timeout_seconds: float = 60.0
    # One-segment names map to "library/<name>" (Docker Hub); default: by the URL's host.
    library_prefix: bool = False
    # Names without a namespace prefix or ?ns= that no local repository has are
    # served from this upstream (docker's registry-mirrors sends such names).
    serve_unprefixed: bool = False
    # The cache's size cap (blob bytes held for this upstream; None: no cap): the least
    # recently pulled blobs are evicted above it.
    cache_max_bytes: int | None = None
    # Blobs and manifests not pulled for this long are evicted (None: kept).
    cache_max_age_seconds: float | None = None


def _upstream_cache_bytes(table: Mapping[str, Any], where: str) -> int | None:
    raw = table.get("cache_max_bytes")
    if raw is None:
        return None
    try:
        value = parse_size_bytes(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise ConfigError(f"{where}: cache_max_bytes: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: cache_max_bytes must be a positive size such as 50GiB")
    return value


def _upstream_number(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    raw = table.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < float("inf"):
        raise ConfigError(f"{where}: {key} must be a positive number of seconds")
    return float(raw)


def _upstream_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    raw = table.get(key)
    if raw is not None and not isinstance(raw, str):
        raise ConfigError(f"{where}: {key} must be a string")
    return raw.strip() or None if raw is not None else None


def _parse_upstream(table: Any, where: str) -> Upstream:
    """One ``[[upstreams]]`` table; reads ``password_file`` (start-up only, blocks)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - _UPSTREAM_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    namespace = _upstream_str(table, "namespace", where)
    if namespace is None or _MIRROR_NAMESPACE_RE.fullmatch(namespace) is None:
        raise ConfigError(f"{where}: namespace must be one path component such as docker.io")
    if _USERNAME_LIKE_RE.fullmatch(namespace) or namespace == "library":
        raise ConfigError(
            f"{where}: namespace {namespace!r} could be an account's; "
            "use the registry's host name (with a dot), e.g. docker.io"
        )
    url = _upstream_str(table, "url", where)
    parsed = urlsplit(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{where}: url must be http(s)://host[:port]")
    if parsed.path.strip("/") or parsed.query or parsed.username:
        raise ConfigError(f"{where}: url must be http(s)://host[:port] (credentials apart)")
    username = _upstream_str(table, "username", where)
    password = table.get("password")
    if password is not None and not isinstance(password, str):
        raise ConfigError(f"{where}: password must be a string")
    password_file = _upstream_str(table, "password_file", where)
    if password_file is not None:
        if password is not None:
            raise ConfigError(f"{where}: set password or password_file, not both")
        try:
            password = Path(password_file).expanduser().read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{where}: password_file: {exc.strerror or exc}") from None
    if (username is None) != (password is None):
        raise ConfigError(f"{where}: username and password must be set together")
    library_prefix = table.get("library_prefix", parsed.hostname in _DOCKER_HUB_HOSTS)
    if not isinstance(library_prefix, bool):
        raise ConfigError(f"{where}: library_prefix must be true or false")
    serve_unprefixed = table.get("serve_unprefixed", False)
    if not isinstance(serve_unprefixed, bool):
        raise ConfigError(f"{where}: serve_unprefixed must be true or false")
    return Upstream(
        namespace=namespace,
        url=f"{parsed.scheme}://{parsed.netloc}",
        username=username,
        password=password,
        tag_ttl_seconds=_upstream_number(table, "tag_ttl_seconds", 300.0, where),
        connect_timeout_seconds=_upstream_number(table, "connect_timeout_seconds", 10.0, where),
        read_timeout_seconds=_upstream_number(table, "read_timeout_seconds", 60.0, where),
        library_prefix=library_prefix,
        serve_unprefixed=serve_unprefixed,
        cache_max_bytes=_upstream_cache_bytes(table, where),
        cache_max_age_seconds=(
            _upstream_number(table, "cache_max_age_seconds", 1.0, where)
            if "cache_max_age_seconds" in table
            else None
        ),
    )


def parse_upstreams(raw: Any, where: str) -> tuple[Upstream, ...]:
    """The ``upstreams`` list: TOML ``[[upstreams]]`` tables, or (from a variable or
    flag) the same as an inline TOML array. Raises ConfigError naming ``where``."""
    if isinstance(raw, str):
        try:
            raw = tomllib.loads(f"upstreams = {raw}")["upstreams"] if raw.strip() else []
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not an inline TOML array of tables: {exc}") from None
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{where}: must be a list of [[upstreams]] tables")
    upstreams = tuple(
        item if isinstance(item, Upstream) else _parse_upstream(item, f"{where}[{i}]")
        for i, item in enumerate(raw)
    )
    namespaces = [u.namespace for u in upstreams]
    if len(set(namespaces)) != len(namespaces):
        raise ConfigError(f"{where}: two upstreams share a namespace")
    if sum(u.serve_unprefixed for u in upstreams) > 1:
        raise ConfigError(f"{where}: at most one upstream may set serve_unprefixed")
    return upstreams


def parse_size_bytes(text: str) -> int:
    """Parse ``"512"``, ``"64MiB"``, ``"10GB"`` into bytes; raise ValueError."""
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (use bytes or a unit such as MiB, GiB)")
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _parse_port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError("must be between 0 and 65535")
    return port


def _parse_positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _parse_non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks (a bare address is a /32 or /128)."""
    networks = []
    for item in text.split(","):
        if item := item.strip():
            try:
                networks.append(ipaddress.ip_network(item, strict=True))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an address or network: {exc}") from None
    return tuple(networks)


def _parse_log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level


def _parse_log_format(text: str) -> str:
    log_format = text.strip().lower()
    if log_format not in _LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(_LOG_FORMATS)}")
    return log_format


def _parse_seconds(text: str) -> float:
    seconds = float(text)
    if not 0 <= seconds < float("inf"):
        raise ValueError("must be a number of seconds, 0 or more")
    return seconds


def _parse_positive_seconds(text: str) -> float:
    seconds = _parse_seconds(text)
    if seconds == 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


def _parse_database_url(text: str) -> str | None:
    url = text.strip()
    if not url:
        return None
    if not url.startswith(("postgres://", "postgresql://")):
        raise ValueError("must start with postgresql://")
    return url


def _parse_host(text: str) -> str:
    host = text.strip()
    if not host:
        raise ValueError("must not be empty")
    return host


def _parse_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("must not be empty")
    return Path(text).expanduser()


def _parse_optional_path(text: str) -> Path | None:
    return Path(text).expanduser() if text.strip() else None


def _parse_optional_str(text: str) -> str | None:
    return text.strip() or None


def _parse_auth_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in ("token", "none"):
        raise ValueError("must be token or none")
    return mode


def _parse_storage(text: str) -> str:
    kind = text.strip().lower()
    if kind not in ("filesystem", "s3"):
        raise ValueError("must be filesystem or s3")
    return kind


_S3_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _parse_s3_bucket(text: str) -> str:
    bucket = text.strip()
    if bucket and (_S3_BUCKET_RE.fullmatch(bucket) is None or ".." in bucket):
        raise ValueError("must be a valid S3 bucket name (3-63 of a-z 0-9 . -)")
    return bucket


def _parse_s3_prefix(text: str) -> str:
    prefix = text.strip().strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError("must be key segments separated by '/'")
    return prefix + "/" if prefix else ""


def _parse_s3_endpoint_url(text: str) -> str:
    url = text.strip()
    if url and re.fullmatch(r"https?://[^\s/?#]+/?", url) is None:
        raise ValueError("must be http(s)://host[:port], or empty for AWS")
    return url.rstrip("/")


def _parse_s3_region(text: str) -> str:
    region = text.strip()
    if re.fullmatch(r"[a-z0-9-]{1,32}", region) is None:
        raise ValueError("must be a region name such as us-east-1")
    return region


def _parse_s3_part_bytes(text: str) -> int:
    size = parse_size_bytes(text)
    if not 5 * 1024**2 <= size <= 5 * 1024**3:
        raise ValueError("must be between 5MiB and 5GiB (S3's part size limits)")
    return size


def _parse_secret(text: str) -> str | None:
    secret = text.strip()
    if not secret:
        return None
    if len(secret) < 32:
        raise ValueError("must be at least 32 characters")
    return secret


@dataclass(frozen=True)
class RetentionRule:
    """``[[retention]]``: in repositories matching ``repositories`` (a shell glob over
    ``namespace/name``), keep the ``keep_last`` most recently pushed tags and every tag
    matching one of ``keep_tags``; garbage collection deletes the other tags."""

    repositories: str
    keep_last: int = 0
    keep_tags: tuple[str, ...] = ()


def _parse_retention_rule(raw: Any, where: str) -> RetentionRule:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    unknown = set(raw) - {"repositories", "keep_last", "keep_tags"}
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    pattern = raw.get("repositories")
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"{where}: repositories must be a non-empty glob string")
    keep_last = raw.get("keep_last", 0)
    if not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 0:
        raise ValueError(f"{where}: keep_last must be an integer, 0 or more")
    keep_tags = raw.get("keep_tags", [])
    if not isinstance(keep_tags, list) or not all(isinstance(t, str) and t for t in keep_tags):
        raise ValueError(f"{where}: keep_tags must be a list of glob strings")
    return RetentionRule(pattern, keep_last, tuple(keep_tags))


def parse_retention(raw: Any) -> tuple[RetentionRule, ...]:
    """The ``[[retention]]`` tables (or, from a variable or flag, the same written as a
    TOML array of inline tables); raise ValueError."""
    if isinstance(raw, str):
        try:
            raw = tomllib.loads("rules = " + raw)["rules"] if raw.strip() else []
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not a TOML array of tables: {exc}") from None
    if not isinstance(raw, list):
        raise ValueError("must be an array of tables ([[retention]])")
    return tuple(_parse_retention_rule(rule, f"rule {i + 1}") for i, rule in enumerate(raw))


@dataclass(frozen=True)
class Settings:
    """Everything registryd needs to run; built once, passed down explicitly."""

    host: str = "127.0.0.1"
    port: int = 5000
    # PEM certificate (chain) and key: serve HTTPS (TLS 1.2+), re-read when they change.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Keep access facts per process, invalidated by PostgreSQL LISTEN/NOTIFY
    # (off behind a transaction-mode PgBouncer, which cannot hold a LISTEN).
    access_cache: bool = True
    data_dir: Path = Path("registryd-data")
    # None: start the embedded PostgreSQL inside data_dir.
    database_url: str | None = None
    db_pool_min_size: int = 2
    db_pool_max_size: int = 20
    # 0 behind a transaction-mode PgBouncer (it cannot keep prepared statements).
    db_statement_cache_size: int = 100
    # 0 means no limit.
    max_layer_bytes: int = 0
    max_json_bytes: int = 4 * 1024**2
    # Temp files of uploads untouched this long are abandoned and removed.
    stale_upload_seconds: int = 3600
    # host[:port] that clients reach us at; None: the request's Host header.
    public_host: str | None = None
    log_level: str = "info"
    # "token": users, tokens and permissions (v1 spec §4); "none": anyone may do anything.
    auth_mode: str = "token"
    # Anonymous clients may read public repositories.
    anonymous_pull: bool = True
    # Anyone may create an account with POST /v1/users.
    open_signup: bool = True
    # HMAC key for tokens; shared by replicas. None: generated into data_dir once.
    token_secret: str | None = None
    token_ttl_seconds: int = 3600
    # Bootstrapped (created, or its password reset) at start-up when both are set.
    admin_user: str | None = None
    admin_password: str | None = None
    # json: one object a line, for collectors; text: for a terminal; auto: text on a TTY.
    log_format: str = "auto"
    # After SIGTERM, /readyz answers 503 for this long while connections are still
    # accepted, so load balancers stop sending new ones before the listener closes.
    drain_delay_seconds: float = 0.0
    # Then in-flight requests get this long to finish before they are cancelled.
    drain_timeout_seconds: float = 30.0
    # /readyz gives each dependency check this long.
    readiness_timeout_seconds: float = 2.0
    # Where each process keeps its metric files; None: a private temp directory.
    metrics_dir: Path | None = None
    # Server processes sharing the port (SO_REUSEPORT); each has its own pool.
    workers: int = 1
    # Serve blob bodies with zero-copy sendfile (off: read and write them, as over TLS).
    sendfile: bool = True
    # Blob files kept open per process and shared by concurrent GETs, so a popular
    # layer is served without opening it again (0: open and close per request).
    open_files: int = 256
    # Drop a blob's pages from the page cache once it is fsynced (filesystem storage):
    # pushes do not evict the pulls' hot set, and reused pages are cheaper than new.
    drop_written_pages: bool = True
    # Bounded waits on PostgreSQL: getting a connection (connecting included) and
    # each statement; beyond them the request is answered 503 with Retry-After.
    db_acquire_timeout_seconds: float = 5.0
    db_statement_timeout_seconds: float = 30.0
    # Argon2 runs on its own threads, never on the executor blob I/O uses; hashes
    # waiting beyond the queue are refused at once (503) instead of piling up.
    password_hash_threads: int = 1
    password_hash_queue: int = 16
    # Failed logins within the window, per client address and per account, before 429.
    login_failures_per_address: int = 20
    # Reverse proxies whose X-Forwarded-For is believed (registryd/http/client_address.py).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    login_failures_per_account: int = 10
    login_failure_window_seconds: float = 60.0
    # Slow clients: the whole request head must arrive within header_timeout_seconds,
    # and a body may pause at most body_idle_timeout_seconds (0: no limit).
    header_timeout_seconds: float = 30.0
    body_idle_timeout_seconds: float = 60.0
    # Open connections per client address and process; more are closed at once (0: no limit).
    max_connections_per_address: int = 512
    # A dead worker or embedded PostgreSQL is restarted at most this often; beyond it
    # the server exits 1 so that its own supervisor takes over.
    max_restarts_per_minute: int = 5
    # Open v2 upload sessions a signed-in user may have at once (0: no limit).
    max_uploads_per_user: int = 100
    # /readyz answers 503 while the storage has less free space than this (0: never).
    min_free_bytes: int = 512 * 1024**2
    # Where blobs live: "filesystem" (under data_dir) or "s3" (an S3-compatible
    # bucket; credentials from the standard AWS chain, never from these settings).
    storage: str = "filesystem"
    s3_bucket: str = ""
    # Every key of the store starts with this (empty, or ending in "/").
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    # The S3 API's address; empty: AWS's own for the region.
    s3_endpoint_url: str = ""
    # Address the bucket in the path (http://host/bucket/key), as MinIO and Ceph want.
    s3_path_style: bool = False
    # Blob GETs answer 307 to a short-lived presigned URL (false: stream through the server).
    s3_redirect: bool = True
    # Bytes per multipart part, held in memory per upload in flight (S3: 5 MiB to 5 GiB).
    s3_part_bytes: int = 16 * 1024**2
    # Registries mirrored under local namespaces (pull-through cache), from [[upstreams]].
    upstreams: tuple[Upstream, ...] = ()
    # Garbage collection: blobs, links and v1 images younger than this are never
    # collected (a layer is pushed before the manifest that refers to it).
    gc_grace_seconds: int = 3600
    # The server collects this often (0: never; run ``registryd gc`` instead)...
    gc_interval_seconds: int = 3600
    # ...for at most this long per run; the next run resumes where it stopped.
    gc_max_seconds: int = 300
    # Untagged manifests without a live parent older than this are deleted (0: kept).
    gc_untagged_seconds: int = 0
    # A collection deletes at most this many rows a second, to leave CPU to clients (0: no limit).
    gc_max_deletes_per_second: int = 0
    # [[retention]] rules, from the config file.
    retention: tuple[RetentionRule, ...] = ()

    @property
    def storage_root(self) -> Path:
        return self.data_dir / "storage"

    @property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def token_secret_file(self) -> Path:
        return self.data_dir / "token-secret"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``REGISTRYD_*`` variables, then ``overrides``.

        ``overrides`` are already-typed values (from flags); ``None`` means
        "not given". Raises ConfigError naming the variable that is wrong.
        """
        return resolve(environ, flags=overrides).settings

    def validate(self) -> None:
        """Cross-field checks; raise ConfigError naming the setting."""
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ConfigError(
                f"{ENV_PREFIX}DB_POOL_MIN_SIZE={self.db_pool_min_size} is larger than "
                f"{ENV_PREFIX}DB_POOL_MAX_SIZE={self.db_pool_max_size}"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError(
                f"{ENV_PREFIX}TLS_CERT_FILE and {ENV_PREFIX}TLS_KEY_FILE must be set together"
            )
        if (self.admin_user is None) != (self.admin_password is None):
            raise ConfigError(
                f"{ENV_PREFIX}ADMIN_USER and {ENV_PREFIX}ADMIN_PASSWORD must be set together"
            )
        if self.max_json_bytes < 2:
            raise ConfigError(f"{ENV_PREFIX}MAX_JSON_BYTES must allow at least a JSON object")
        if self.storage == "s3" and not self.s3_bucket:
            raise ConfigError(f"{ENV_PREFIX}S3_BUCKET must be set when {ENV_PREFIX}STORAGE=s3")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "host": _parse_host,
    "port": _parse_port,
    "tls_cert_file": _parse_optional_path,
    "tls_key_file": _parse_optional_path,
    "access_cache": _parse_bool,
    "data_dir": _parse_path,
    "database_url": _parse_database_url,
    "db_pool_min_size": _parse_positive_int,
    "db_pool_max_size": _parse_positive_int,
    "db_statement_cache_size": _parse_non_negative_int,
    "max_layer_bytes": parse_size_bytes,
    "max_json_bytes": parse_size_bytes,
    "stale_upload_seconds": _parse_non_negative_int,
    "public_host": _parse_optional_str,
    "log_level": _parse_log_level,
    "auth_mode": _parse_auth_mode,
    "anonymous_pull": _parse_bool,
    "open_signup": _parse_bool,
    "token_secret": _parse_secret,
    "token_ttl_seconds": _parse_positive_int,
    "admin_user": _parse_optional_str,
    "admin_password": _parse_optional_str,
    "log_format": _parse_log_format,
    "drain_delay_seconds": _parse_seconds,
    "drain_timeout_seconds": _parse_seconds,
    "readiness_timeout_seconds": _parse_seconds,
    "metrics_dir": _parse_optional_path,
    "workers": _parse_positive_int,
    "sendfile": _parse_bool,
    "open_files": _parse_non_negative_int,
    "drop_written_pages": _parse_bool,
    "db_acquire_timeout_seconds": _parse_positive_seconds,
    "db_statement_timeout_seconds": _parse_positive_seconds,
    "password_hash_threads": _parse_positive_int,
    "password_hash_queue": _parse_positive_int,
    "login_failures_per_address": _parse_non_negative_int,
    "trusted_proxies": _parse_networks,
    "login_failures_per_account": _parse_non_negative_int,
    "login_failure_window_seconds": _parse_positive_seconds,
    "header_timeout_seconds": _parse_seconds,
    "body_idle_timeout_seconds": _parse_seconds,
    "max_connections_per_address": _parse_non_negative_int,
    "max_restarts_per_minute": _parse_non_negative_int,
    "max_uploads_per_user": _parse_non_negative_int,
    "min_free_bytes": parse_size_bytes,
    "storage": _parse_storage,
    "s3_bucket": _parse_s3_bucket,
    "s3_prefix": _parse_s3_prefix,
    "s3_region": _parse_s3_region,
    "s3_endpoint_url": _parse_s3_endpoint_url,
    "s3_path_style": _parse_bool,
    "s3_redirect": _parse_bool,
    "s3_part_bytes": _parse_s3_part_bytes,
    # Not a one-string setting: resolve() hands it to parse_upstreams with its origin.
    "upstreams": str,
    "gc_grace_seconds": _parse_non_negative_int,
    "gc_interval_seconds": _parse_non_negative_int,
    "gc_max_seconds": _parse_positive_int,
    "gc_untagged_seconds": _parse_non_negative_int,
    "gc_max_deletes_per_second": _parse_non_negative_int,
    "retention": parse_retention,
}


def env_var(name: str) -> str:
    """The environment variable of setting ``name``."""
    return ENV_PREFIX + name.upper()


def flag(name: str) -> str:
    """The command-line flag of setting ``name``."""
    return "--" + name.replace("_", "-")


def setting_names() -> list[str]:
    return [field.name for field in dataclasses.fields(Settings)]


@dataclass(frozen=True)
class Resolved:
    """Settings and, for each, where its value came from (for ``registryd config check``)."""

    settings: Settings
    # Setting name -> "default", "file <path>", "env REGISTRYD_X" or "flag --x".
    sources: dict[str, str]
    # REGISTRYD_* variables that name no setting: usually a typo.
    unknown_env: list[str]


def _parse(name: str, raw: str, where: str) -> Any:
    if name == "upstreams":
        return parse_upstreams(raw, where)
    try:
        return _PARSERS[name](raw)
    except ValueError as exc:
        raise ConfigError(f"{where}={raw!r}: {exc}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    """The file's top-level table; raise ConfigError naming the file. Blocks (start-up only)."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None


def resolve(
    environ: Mapping[str, str] | None = None,
    *,
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Resolved:
    """Merge default < config file < environment < flags into validated settings.

    ``config_file`` defaults to ``REGISTRYD_CONFIG``. ``flags`` maps setting
    names to flag values: strings are parsed like the environment, anything
    else is taken as already typed, ``None`` means "not given". Raises
    ConfigError naming the file key, variable or flag that is wrong. Reads the
    file, so it blocks: call it at start-up.
    """
    env = os.environ if environ is None else environ
    known = set(_PARSERS)
    values: dict[str, Any] = {}
    sources = dict.fromkeys(known, "default")
    if config_file is None and env.get(CONFIG_FILE_VAR, "").strip():
        config_file = Path(env[CONFIG_FILE_VAR]).expanduser()
    if config_file is not None:
        for key, raw in _read_config_file(config_file).items():
            where = f"{config_file}: {key}"
            if key not in known:
                raise ConfigError(f"{where}: unknown setting")
            if key in ("upstreams", "retention"):  # the settings that are lists of tables
                if key == "upstreams":
                    values[key] = parse_upstreams(raw, where)
                else:
                    try:
                        values[key] = parse_retention(raw)
                    except ValueError as exc:
                        raise ConfigError(f"{where}: {exc}") from None
                sources[key] = f"file {config_file}"
                continue
            if isinstance(raw, bool):
                raw = "true" if raw else "false"
            if not isinstance(raw, str | int | float):
                raise ConfigError(f"{where}: must be a string, a number or a boolean")
            values[key] = _parse(key, str(raw), where)
            sources[key] = f"file {config_file}"
    for name in known:
        var = env_var(name)
        if (raw := env.get(var)) is not None:
            values[name] = _parse(name, raw, var)
            sources[name] = f"env {var}"
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name == "upstreams" and not isinstance(value, str):
            value = parse_upstreams(value, flag(name))
        values[name] = _parse(name, value, flag(name)) if isinstance(value, str) else value
        sources[name] = f"flag {flag(name)}"
    settings = Settings(**values)
    settings.validate()
    unknown = sorted(
        var
        for var in env
        if var.startswith(ENV_PREFIX)
        and var != CONFIG_FILE_VAR
        and var[len(ENV_PREFIX) :].lower() not in known
    )
    return Resolved(settings, sources, unknown)
