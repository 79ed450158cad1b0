"""OpenGraph extraction from HTML for URL previews (pure: bytes in, dict out).

Uses the standard library's tolerant HTMLParser, which builds no tree and runs no scripts.
Only the first `MAX_HTML_BYTES` of a page are parsed.
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

MAX_HTML_BYTES = 1024 * 1024
MAX_TITLE = 1000
MAX_DESCRIPTION = 500
MAX_OG_VALUE = 2000
MAX_OG_KEYS = 50

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([a-zA-Z0-9_:.-]+)""", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def _charset_ok(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(body: bytes, header_charset: str | None) -> str:
    """Decode with the header's charset, else a <meta charset>, else UTF-8, else cp1252."""
    head = body[:2048]
    candidates = [header_charset]
    match = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    if match:
        candidates.append(match.group(1).decode("ascii", "ignore"))
    for name in candidates:
        codec = _charset_ok(name) if name else None
        if codec:
            return body.decode(codec, "replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("cp1252", "replace")


class _OgParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title: str | None = None
        self._in_title = False
        self._title_parts: list[str] = []
        self.image_src: str | None = None
        self.link_image: str | None = None
        self.icon: str | None = None
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag in ("script", "style", "noscript", "svg"):
            self._skip_depth += 1
        elif tag == "meta":
            key = (a.get("property") or a.get("name") or a.get("itemprop") or "").strip().lower()
            content = a.get("content")
            if key and content is not None and key not in self.meta and len(self.meta) < MAX_OG_KEYS * 4:
                self.meta[key] = content.strip()
        elif tag == "title" and self.title is None:
            self._in_title = True
        elif tag == "link":
            rel = a.get("rel", "").lower().split()
            href = a.get("href")
            if href and "image_src" in rel and self.link_image is None:
                self.link_image = href
            elif href and "icon" in rel and self.icon is None:
                self.icon = href
        elif tag == "img" and self.image_src is None and self._skip_depth == 0:
            src = a.get("src")
            if src and not src.startswith("data:"):
                self.image_src = src

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "svg") and self._skip_depth:
            self._skip_depth -= 1
        elif tag == "title" and self._in_title:
            self._in_title = False
            self.title = "".join(self._title_parts)

    def handle_data(self, data: str) -> None:
        if self._in_title and len(self._title_parts) < 1000:
            self._title_parts.append(data)


def _clean(text: str, limit: int) -> str:
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def parse_html(body: bytes, base_url: str, header_charset: str | None = None) -> dict[str, Any]:
    """OpenGraph keys for a page: its og:* tags, with title/description/image fallbacks.

    `og:image` is returned as an absolute http(s) URL; the caller fetches it into the media
    repository and replaces it with an mxc:// URI.
    """
    text = decode_html(body[:MAX_HTML_BYTES], header_charset)
    parser = _OgParser()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # HTMLParser is tolerant; anything left is a page we give up on
        pass
    if parser._in_title:
        parser.title = "".join(parser._title_parts)
    meta = parser.meta
    og: dict[str, Any] = {}
    for key, value in meta.items():
        if key.startswith("og:") and len(og) < MAX_OG_KEYS and value:
            og[key] = value[:MAX_OG_VALUE]
    title = meta.get("og:title") or meta.get("twitter:title") or parser.title
    if title:
        og["og:title"] = _clean(title, MAX_TITLE)
    description = meta.get("og:description") or meta.get("twitter:description") or meta.get("description")
    if description:
        og["og:description"] = _clean(description, MAX_DESCRIPTION)
    else:
        og.pop("og:description", None)
    image = (
        meta.get("og:image")
        or meta.get("og:image:url")
        or meta.get("og:image:secure_url")
        or meta.get("twitter:image")
        or meta.get("twitter:image:src")
        or parser.link_image
        or parser.image_src
    )
    for key in ("og:image", "og:image:url", "og:image:secure_url"):
        og.pop(key, None)
    if image:
        absolute = urljoin(base_url, image.strip())
        if absolute.startswith(("http://", "https://")):
            og["og:image"] = absolute
    return og
