"""registryd: an async container image registry (Docker Registry v1 and Hub/Index v1)."""

__version__ = "0.1.0"
