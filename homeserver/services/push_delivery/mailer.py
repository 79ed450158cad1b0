"""Notification digests: rendered as plain text and HTML (UTF-8, so Korean names and messages
arrive intact) and sent over SMTP with aiosmtplib (asyncio: a slow mail server never holds a
thread or the event loop)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import quote

import aiosmtplib

from homeserver.config.push import EmailConfig

logger = logging.getLogger(__name__)

SMTP_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class DigestMessage:
    sender_name: str
    body: str
    ts: int
    is_invite: bool = False


@dataclass(frozen=True, slots=True)
class DigestRoom:
    room_id: str
    name: str
    messages: tuple[DigestMessage, ...]


def room_link(config: EmailConfig, room_id: str) -> str:
    base = config.client_base_url
    if base == "https://matrix.to":
        return f"{base}/#/{quote(room_id, safe='!:')}"
    return f"{base}/#/room/{quote(room_id, safe='!:')}"


def subject(config: EmailConfig, rooms: list[DigestRoom]) -> str:
    """Synapse's default subjects (`email.subjects`), for the room with the newest message."""
    app = config.app_name
    first = rooms[0]
    senders = {m.sender_name for m in first.messages}
    newest = first.messages[0]
    if len(rooms) == 1 and len(first.messages) == 1 and newest.is_invite:
        return f"[{app}] {newest.sender_name} has invited you to join the {first.name} room on {app}..."
    if len(rooms) > 1:
        if len({m.sender_name for r in rooms for m in r.messages}) == 1:
            return f"[{app}] You have messages on {app} from {newest.sender_name} and others..."
        return f"[{app}] You have messages on {app} in the {first.name} room and others..."
    if len(first.messages) == 1:
        return f"[{app}] You have a message on {app} from {newest.sender_name} in the {first.name} room..."
    if len(senders) == 1:
        return f"[{app}] You have messages on {app} from {newest.sender_name}..."
    return f"[{app}] You have messages on {app} in the {first.name} room..."


def _time(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_text(config: EmailConfig, user_name: str, rooms: list[DigestRoom], unsubscribe_url: str) -> str:
    lines = [f"Hi {user_name},", "", f"You have unread messages on {config.app_name}:", ""]
    for room in rooms:
        lines.append(f"{room.name}  ({room_link(config, room.room_id)})")
        for message in reversed(room.messages):  # oldest first, as a conversation reads
            lines.append(f"  [{_time(message.ts)}] {message.sender_name}: {message.body}")
        lines.append("")
    lines += [
        "You are receiving this email because of unread notifications on your account.",
        f"To stop these emails: {unsubscribe_url}",
    ]
    return "\n".join(lines) + "\n"


def render_html(config: EmailConfig, user_name: str, rooms: list[DigestRoom], unsubscribe_url: str) -> str:
    e = html.escape
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>',
        f"<p>Hi {e(user_name)},</p>",
        f"<p>You have unread messages on {e(config.app_name)}:</p>",
    ]
    for room in rooms:
        parts.append(f'<h3><a href="{e(room_link(config, room.room_id))}">{e(room.name)}</a></h3><ul>')
        for message in reversed(room.messages):
            when, who, what = e(_time(message.ts)), e(message.sender_name), e(message.body)
            parts.append(f"<li><small>{when}</small> <b>{who}</b>: {what}</li>")
        parts.append("</ul>")
    parts.append(
        "<p><small>You are receiving this email because of unread notifications on your account. "
        f'<a href="{e(unsubscribe_url)}">Unsubscribe</a></small></p></body></html>'
    )
    return "".join(parts)


def build_message(
    config: EmailConfig, to: str, user_name: str, rooms: list[DigestRoom], unsubscribe_url: str
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(config, rooms)
    message["From"] = config.from_address
    message["To"] = to
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid()
    # RFC 8058 one-click unsubscribe: mail clients POST to the link.
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(render_text(config, user_name, rooms, unsubscribe_url), charset="utf-8")
    message.add_alternative(
        render_html(config, user_name, rooms, unsubscribe_url), subtype="html", charset="utf-8"
    )
    return message


async def send(config: EmailConfig, message: EmailMessage) -> None:
    """Raises aiosmtplib.SMTPException or OSError when the mail server refuses or is down."""
    await aiosmtplib.send(
        message,
        hostname=config.smtp_host,
        port=config.smtp_port,
        username=config.smtp_user,
        password=config.smtp_pass,
        use_tls=config.force_tls,
        # None: STARTTLS when offered; True: refuse to send in clear text.
        start_tls=True if config.require_transport_security else (None if config.enable_tls else False),
        timeout=SMTP_TIMEOUT,
    )
