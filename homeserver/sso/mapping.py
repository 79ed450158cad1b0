"""From an identity provider's claims to Matrix user attributes: Synapse's default mapping
provider (Jinja2 templates such as `{{ user.preferred_username }}`), rendered in a sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from homeserver.config.oidc import OidcMapping

# Characters Synapse leaves as they are when turning a name into a localpart (its
# MXID_LOCALPART_ALLOWED_CHARACTERS less "=", which starts an escape).
_LOCALPART_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-/+")


def _finalize(value: Any) -> Any:
    return "" if value is None else value  # a missing claim renders as nothing, as in Synapse


def _localpart_from_email(address: Any) -> Any:
    return address.split("@", 1)[0] if isinstance(address, str) else address


_env = SandboxedEnvironment(finalize=_finalize, autoescape=False)
_env.filters["localpart_from_email"] = _localpart_from_email


class MappingError(Exception):
    """The claims cannot be turned into a user (missing subject, bad template)."""


@dataclass(frozen=True, slots=True)
class UserAttributes:
    remote_user_id: str
    localpart: str | None
    display_name: str | None
    emails: tuple[str, ...]


def map_username_to_localpart(name: str) -> str:
    """Synapse's `map_username_to_mxid_localpart` (case-insensitive): ASCII lower-cased, every
    other byte that a localpart may not hold becomes `=` and its hex (reversible), and a leading
    underscore (reserved for appservices) `=5f`."""
    out = []
    for byte in name.encode():
        char = chr(byte).lower() if byte < 0x80 else ""
        out.append(char if char and (char in _LOCALPART_CHARS or char == "_") else f"={byte:02x}")
    result = "".join(out)
    return "=5f" + result[1:] if result.startswith("_") else result


def _render(template: str | None, claims: Mapping[str, Any]) -> str | None:
    if not template:
        return None
    try:
        rendered = _env.from_string(template).render(user=claims)
    except jinja2.TemplateError as exc:
        raise MappingError(f"template {template!r} failed: {exc}") from exc
    return rendered.strip() or None


def map_claims(mapping: OidcMapping, claims: Mapping[str, Any]) -> UserAttributes:
    subject = claims.get(mapping.subject_claim)
    if subject is None or subject == "":
        raise MappingError(f"the identity provider sent no {mapping.subject_claim!r} claim")
    localpart = _render(mapping.localpart_template, claims)
    email = _render(mapping.email_template, claims)
    return UserAttributes(
        remote_user_id=str(subject),
        localpart=map_username_to_localpart(localpart) if localpart else None,
        display_name=_render(mapping.display_name_template, claims),
        emails=(email.lower(),) if email and "@" in email else (),
    )
