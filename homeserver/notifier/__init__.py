"""Wakes long-polling /sync requests when something relevant to their user happens."""
