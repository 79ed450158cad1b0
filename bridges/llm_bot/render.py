"""Markdown (what chat models write) to the `org.matrix.custom.html` formatted_body. Raw HTML in
the model's output is escaped, never passed through: the text is untrusted."""

from __future__ import annotations

from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def markdown_to_html(text: str) -> str:
    return _md.render(text).strip()


def message_content(text: str, *, notice: bool = False) -> dict[str, str]:
    content = {"msgtype": "m.notice" if notice else "m.text", "body": text}
    html = markdown_to_html(text)
    # Plain text needs no formatted_body (clients render body as is).
    if html != f"<p>{_escape(text)}</p>":
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html
    return content


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
