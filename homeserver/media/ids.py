"""Media ids and `mxc://` URIs (the spec's character whitelist keeps paths traversal-free)."""

from __future__ import annotations

import re
import secrets
import string

from homeserver.core.ids import is_valid_server_name

_MEDIA_ID = re.compile(r"\A[A-Za-z0-9_-]{1,255}\Z")
_ALPHABET = string.ascii_letters + string.digits
MEDIA_ID_LENGTH = 24  # ~143 bits: ids are unguessable, which is what protects local media


def generate_media_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(MEDIA_ID_LENGTH))


def is_valid_media_id(media_id: str) -> bool:
    return bool(_MEDIA_ID.match(media_id))


def mxc_uri(server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"


def parse_mxc(uri: str) -> tuple[str, str] | None:
    """(server_name, media_id) of a well-formed `mxc://` URI, else None."""
    if not uri.startswith("mxc://"):
        return None
    server_name, sep, media_id = uri[len("mxc://") :].partition("/")
    if not sep or not is_valid_server_name(server_name) or not is_valid_media_id(media_id):
        return None
    return server_name, media_id
