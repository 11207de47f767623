"""Native TLS: a server context from PEM files, and certificate rotation without a restart.

docker and containerd refuse plain-HTTP registries outside localhost unless told
they are insecure, so a standalone registry terminates TLS itself. Only TLS 1.2
and 1.3 are offered.

Rotation (cert-manager renews a Secret; the kubelet updates the mounted files):
the files are polled, and a changed pair is loaded into a *new* context in a
thread. The listening context's SNI callback, which OpenSSL calls for every
ClientHello (with or without a server name), then hands each new connection
the newest context. A context already in use is never modified, so handshakes
in flight never see a half-loaded certificate; a pair that fails to load is
logged and the previous one is kept.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)

# How often the certificate and key files are checked for changes.
RELOAD_CHECK_SECONDS = 5.0


def new_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context holding the PEM pair (blocks: reads the files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert_file, key_file)
    return context


def _stamp(cert_file: Path, key_file: Path) -> tuple[int, ...]:
    """What changes when either file is replaced or rewritten (blocks)."""
    stamp: list[int] = []
    for path in (cert_file, key_file):
        st = path.stat()
        stamp += [st.st_ino, st.st_mtime_ns, st.st_size]
    return tuple(stamp)


class ReloadingContext:
    """The listening context and the newest loaded one; ``run`` keeps it current."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.listening = new_context(cert_file, key_file)
        self.current = self.listening
        self.listening.sni_callback = self._select
        self._stamp = _stamp(cert_file, key_file)

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        current = self.current
        if current is not self.listening:
            connection.context = current

    async def reload_if_changed(self) -> bool:
        """Load the files into a new context if they changed; return whether it did."""
        try:
            stamp = await asyncio.to_thread(_stamp, self.cert_file, self.key_file)
            if stamp == self._stamp:
                return False
            context = await asyncio.to_thread(new_context, self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            # Mid-rotation (key written before certificate) or a bad file: keep serving.
            log.warning("TLS certificate not reloaded, keeping the previous one: %s", exc)
            return False
        self._stamp = stamp
        self.current = context
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True

    async def run(self, interval_seconds: float = RELOAD_CHECK_SECONDS) -> None:
        """Check the files every ``interval_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(interval_seconds)
            await self.reload_if_changed()
