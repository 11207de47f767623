.PHONY: check test

check:
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy

test:
	.venv/bin/pytest
