"""Test helpers: clients that speak the protocols as real clients do, and store inspection."""
