"""Wiring a process into a scale-out deployment: its link to main and its Redis side (docs/scale-out.md)."""
