"""Attacks registryd withstands: each test performs one through the HTTP API or the process."""
