"""Attacks on real ``registryd serve`` processes use the process tests' launcher."""

from tests.process.conftest import launcher

__all__ = ["launcher"]
