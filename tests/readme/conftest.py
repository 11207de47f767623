from tests.process.conftest import launcher

__all__ = ["launcher"]  # the fixture, shared with tests/process
