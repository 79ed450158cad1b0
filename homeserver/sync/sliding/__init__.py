"""Simplified sliding sync (MSC4186, `org.matrix.simplified_msc3575`)."""
