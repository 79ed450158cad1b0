"""Event persistence: the single writer of room events."""
