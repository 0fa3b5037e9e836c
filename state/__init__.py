"""Persistent rollover state."""
