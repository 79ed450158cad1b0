"""Server ACLs (`m.room.server_acl`): may a server take part in a room?

The spec's rules: the port is ignored; with `allow_ip_literals: false` an IP-literal server name
is denied; a server matching any `deny` glob is denied; otherwise it must match an `allow` glob
(no `allow` list denies everyone). Globs use `*` and `?` and, like Synapse, ignore case.
Malformed lists or entries are ignored rather than failing the check.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from homeserver.core.errors import MatrixError


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(rf"\A{body}\Z", re.IGNORECASE | re.DOTALL)


def host_of(server_name: str) -> str:
    """The server name without its port (IPv6 literals keep their brackets)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name[: end + 1] if end >= 0 else server_name
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _entries(content: Mapping[str, Any], key: str) -> list[str]:
    value = content.get(key)
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def server_allowed(server_name: str, acl_content: Mapping[str, Any] | None) -> bool:
    """Whether `server_name` passes the ACL whose event content is `acl_content` (None: no ACL)."""
    if acl_content is None:
        return True
    host = host_of(server_name)
    allow_ip_literals = acl_content.get("allow_ip_literals", True)
    if allow_ip_literals is False and is_ip_literal(host):
        return False
    if any(_glob(p).match(host) for p in _entries(acl_content, "deny")):
        return False
    return any(_glob(p).match(host) for p in _entries(acl_content, "allow"))


def check_server_acl(server_name: str, acl_content: Mapping[str, Any] | None) -> None:
    """Raise Synapse's 403 for a request from a server the room's ACL denies."""
    if not server_allowed(server_name, acl_content):
        raise MatrixError(403, "M_FORBIDDEN", "Server is banned from room")
