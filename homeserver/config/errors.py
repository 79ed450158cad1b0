"""The one exception the configuration package raises."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration value is missing, malformed or out of range.

    `path` is the dotted key path (``listeners[0].port``) when the error concerns one key;
    the message then starts with it, so operators see exactly which line to fix.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)
