"""Sync: the /sync response builder and the filter model shared with /messages, /context and /search."""
