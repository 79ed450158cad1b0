"""Operator commands beyond running the server: backup, restore, port-db."""
