"""Room state: the in-memory current state of rooms (and, later, state resolution)."""
