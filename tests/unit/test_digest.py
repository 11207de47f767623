from __future__ import annotations

import pytest

from registryd.digest import Digest, payload_checksum_hasher
from registryd.errors import DigestInvalid


def test_payload_checksum_vectors_from_docker_registry() -> None:
    # docker-registry tests/lib/test_checksums.py: compute_simple(None, "") and json "test".
    empty = payload_checksum_hasher(b"")
    assert empty.digest().hex == (
        "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b"
    )
    with_json = payload_checksum_hasher(b"test")
    assert with_json.digest().hex == (
        "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2"
    )


def test_payload_checksum_streams_the_layer() -> None:
    hasher = payload_checksum_hasher(b'{"id":"x"}')
    for part in (b"ab", b"", b"cd"):
        hasher.update(part)
    assert hasher.digest() == Digest.sha256_of(b'{"id":"x"}\nabcd')


def test_digest_round_trip() -> None:
    text = "sha256:" + "0" * 64
    assert str(Digest.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "0" * 63,
        "sha256:" + "G" * 64,
        "md5:" + "0" * 32,
        "sha512:" + "0" * 64,
        "sha256:../../etc/passwd",
        "0" * 64,
    ],
)
def test_bad_digests(text: str) -> None:
    with pytest.raises(DigestInvalid):
        Digest.parse(text)
