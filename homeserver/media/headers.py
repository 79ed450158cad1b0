"""Response headers for served media: content type, a safe Content-Disposition, sandboxing.

Pure functions, so the rules are unit-tested on their own.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

DEFAULT_CONTENT_TYPE = "application/octet-stream"

# The spec's list of types that may be served `inline` ("Serving inline content"); anything
# else is an attachment, so a browser never renders uploaded HTML or SVG in our origin.
INLINE_CONTENT_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

# What Synapse sends with every piece of media (the spec's recommended CSP, plus media-src).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
        "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
    ),
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow, noarchive, noimageindex",
}
# Media never changes, so clients may keep it; shared caches only when no token was involved.
CACHE_PUBLIC = "public, max-age=86400, s-maxage=86400"
CACHE_PRIVATE = "private, max-age=86400"

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(
    rf"\A{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*\s*\Z"
)
MAX_CONTENT_TYPE_LENGTH = 255
MAX_FILENAME_LENGTH = 255


def normalise_content_type(value: str | None) -> str:
    """The upload's Content-Type as we will store it: syntactically valid or octet-stream."""
    if not value:
        return DEFAULT_CONTENT_TYPE
    value = value.strip()
    if len(value) > MAX_CONTENT_TYPE_LENGTH or not _CONTENT_TYPE.match(value):
        return DEFAULT_CONTENT_TYPE
    return value


def base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def served_content_type(stored: str | None) -> str:
    """Content-Type for a download: the stored one, with a charset added to text/* (as Synapse)."""
    content_type = normalise_content_type(stored)
    if base_type(content_type).startswith("text/") and "charset" not in content_type.lower():
        content_type += "; charset=utf-8"
    return content_type


def is_inline_safe(content_type: str) -> bool:
    return base_type(content_type) in INLINE_CONTENT_TYPES


def clean_filename(name: str | None) -> str | None:
    """A filename fit for the database and headers: no path, no control characters."""
    if name is None:
        return None
    name = "".join(c for c in name if c >= " " and c != "\x7f")
    name = name.replace("/", "_").replace("\\", "_").strip()
    if not name:
        return None
    return name[:MAX_FILENAME_LENGTH]


_PLAIN_FILENAME = re.compile(r"\A[\x20-\x7e]+\Z")


def content_disposition(content_type: str, filename: str | None, *, force_inline: bool = False) -> str:
    """`inline` only for the spec's safe types, `attachment` otherwise; RFC 6266 filename."""
    disposition = "inline" if force_inline or is_inline_safe(content_type) else "attachment"
    filename = clean_filename(filename)
    if not filename:
        return disposition
    if _PLAIN_FILENAME.match(filename) and '"' not in filename and "\\" not in filename:
        return f'{disposition}; filename="{filename}"'
    return f"{disposition}; filename*=utf-8''{quote(filename, safe='')}"


_DISPOSITION_PARAM = re.compile(
    r""";\s*(filename\*?)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))""", re.IGNORECASE
)


def filename_from_disposition(value: str | None) -> str | None:
    """The filename a remote server gave in Content-Disposition (RFC 6266: `filename*` wins)."""
    if not value:
        return None
    plain: str | None = None
    extended: str | None = None
    for match in _DISPOSITION_PARAM.finditer(value):
        name = match.group(1).lower()
        raw = match.group(2) if match.group(2) is not None else match.group(3)
        if name == "filename*":
            charset, sep, rest = raw.partition("'")
            _lang, sep2, encoded = rest.partition("'")
            if sep and sep2 and charset.lower() in ("utf-8", "iso-8859-1"):
                try:
                    extended = unquote(encoded, encoding=charset.lower(), errors="strict")
                except (UnicodeDecodeError, LookupError):
                    extended = None
        elif match.group(2) is not None:
            plain = re.sub(r"\\(.)", r"\1", raw)
        else:
            plain = raw
    return clean_filename(extended if extended is not None else plain)
