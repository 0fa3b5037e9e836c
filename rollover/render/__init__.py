"""Rendering: zone text, JSON and tables for what the core computed (no I/O)."""
