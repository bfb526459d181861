"""Benchmarks: scripts that print tables and write JSON (never timed assertions in tests)."""
