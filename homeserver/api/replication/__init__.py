"""The internal API between processes (docs/scale-out.md)."""
