"""Password checks against systems outside the homeserver (the organisation's LDAP directory)."""


class PasswordProviderUnavailable(Exception):
    """The external system that checks passwords could not be asked (down, unreachable)."""
