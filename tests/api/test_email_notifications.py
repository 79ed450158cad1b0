"""Email notifications (docs/push.md) to a local SMTP server (aiosmtpd): one digest of unread
messages after the delay, grouped by room, text and HTML in UTF-8; nothing for what was read in
time; the per-room throttle; the unsubscribe link removes the email pusher without logging in."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller

from homeserver.app import create_app_from_config
from homeserver.core.clock import FakeClock

from ..conftest import make_config, services_of
from .compliance_helpers import V3, User
from .push_helpers import list_pushers, read_up_to, set_pusher, settle
from .test_pushers import add_email

MINUTE = 60 * 1000
ADDRESS = "bob@school.example"


class Inbox:
    """aiosmtpd handler: keeps every message it accepts (it runs in the controller's thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _config(tmp_path: Path, port: int, **email_extra: Any) -> Any:
    return make_config(
        tmp_path,
        email={
            "enable_notifs": True,
            "notif_from": "%(app)s <noreply@school.example>",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "app_name": "우리학교",
            "client_base_url": "https://chat.school.example",
            **email_extra,
        },
    )


EMAIL_PUSHER = {
    "kind": "email",
    "app_id": "m.email",
    "pushkey": ADDRESS,
    "app_display_name": "Email Notifications",
    "device_display_name": ADDRESS,
    "lang": "ko",
    "data": {},
}


async def _setup(aiohttp_client: Any, config: Any) -> tuple[Any, FakeClock, User, User, str]:
    clock = FakeClock()
    client = await aiohttp_client(create_app_from_config(config, clock=clock))
    alice = await User.new(client, "alice")
    bob = await User.new(client, "bob")
    await add_email(client, bob.user_id, ADDRESS)
    room = await alice.create_room(preset="private_chat", name="3학년 2반 공지방", invite=[bob.user_id])
    await bob.join(room)
    await set_pusher(bob, EMAIL_PUSHER)
    return client, clock, alice, bob, room


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


async def _advance(client: Any, clock: FakeClock, ms: int) -> None:
    clock.advance(ms)
    services_of(client).pusher_pool.poke()
    await settle(services_of(client))


async def test_one_digest_after_the_delay_then_unsubscribe(
    aiohttp_client: Any, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    client, clock, alice, bob, room = await _setup(aiohttp_client, _config(tmp_path, port))
    await alice.say(room, "내일은 현장학습입니다")
    await alice.say(room, "도시락을 챙겨 오세요")
    await settle(services_of(client))
    await _advance(client, clock, 9 * MINUTE)
    assert inbox.messages == []  # not yet: bob may still read them

    await _advance(client, clock, MINUTE)
    [message] = inbox.messages
    assert inbox.envelopes == [("noreply@school.example", [ADDRESS])]
    assert message["To"] == ADDRESS
    assert message["From"] == "우리학교 <noreply@school.example>"
    assert message["Subject"] == "[우리학교] You have messages on 우리학교 from alice..."
    text, html = _parts(message)
    for part in (text, html):
        assert "3학년 2반 공지방" in part
        assert "내일은 현장학습입니다" in part and "도시락을 챙겨 오세요" in part
        assert f"https://chat.school.example/#/room/{room}" in part
    assert text.index("내일은") < text.index("도시락")  # oldest first within a room

    # Nothing more while nothing new is unread.
    await _advance(client, clock, 60 * MINUTE)
    assert len(inbox.messages) == 1

    # The unsubscribe link: GET confirms (a link scanner must not unsubscribe), POST removes.
    match = re.search(r"To stop these emails: (\S+)", text)
    assert match is not None
    link = urlsplit(match.group(1))
    assert message["List-Unsubscribe"] == f"<{match.group(1)}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = f"{link.path}?{link.query}"
    resp = await client.get(path)
    assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    assert [p["kind"] for p in await list_pushers(bob)] == ["email"]
    # What a mail client's one-click unsubscribe sends (RFC 8058).
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await client.post(path, data="List-Unsubscribe=One-Click", headers=form)
    assert resp.status == 200, await resp.text()
    assert await list_pushers(bob) == []
    assert services_of(client).pusher_pool.workers == {}

    # A forged or broken token is refused.
    for bad in (link.query[:-2] + "xx", "token=", "token=abc.def"):
        resp = await client.post(f"{link.path}?{bad}")
        assert resp.status == 400, bad
    resp = await client.post(link.path)
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_MISSING_PARAM")


async def test_nothing_is_mailed_for_messages_read_in_time(
    aiohttp_client: Any, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    client, clock, alice, bob, room = await _setup(aiohttp_client, _config(tmp_path, port))
    last = await alice.say(room, "읽으면 메일 없음")
    await _advance(client, clock, 5 * MINUTE)
    await read_up_to(bob, room, last)
    await _advance(client, clock, 30 * MINUTE)
    assert inbox.messages == []


async def test_repeated_digests_for_a_room_are_throttled(
    aiohttp_client: Any, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    client, clock, alice, _bob, room = await _setup(aiohttp_client, _config(tmp_path, port))
    await alice.say(room, "first")
    await _advance(client, clock, 10 * MINUTE)
    assert len(inbox.messages) == 1
    await alice.say(room, "second")
    await _advance(client, clock, 10 * MINUTE)  # the room's throttle is 10 minutes: due now
    assert len(inbox.messages) == 2
    await alice.say(room, "third")
    await _advance(client, clock, 60 * MINUTE)  # throttle now 10 min x 144 = a day
    assert len(inbox.messages) == 2
    await _advance(client, clock, 24 * 60 * MINUTE)
    assert len(inbox.messages) == 3
    text, _html = _parts(inbox.messages[2])
    assert "third" in text and "second" not in text


async def test_notif_delay_is_configurable_and_smtp_outage_is_retried(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    port = _free_port()  # the mail server is down at first: nothing listens there
    client, clock, alice, _bob, room = await _setup(aiohttp_client, _config(tmp_path, port, notif_delay="1m"))
    await alice.say(room, "메일 서버가 꺼져 있음")
    await _advance(client, clock, MINUTE)
    [worker] = services_of(client).pusher_pool.workers.values()
    assert worker.due_at is not None  # retrying later

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await _advance(client, clock, MINUTE)
        assert len(inbox.messages) == 1
        await _advance(client, clock, 10 * MINUTE)
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


async def test_email_pushers_are_idle_when_notifications_are_disabled(
    aiohttp_client: Any, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    config = make_config(tmp_path, email={"enable_notifs": False, "smtp_port": port})
    client, clock, alice, _bob, room = await _setup(aiohttp_client, config)
    await alice.say(room, "hello")
    await _advance(client, clock, 60 * MINUTE)
    assert inbox.messages == [] and services_of(client).pusher_pool.workers == {}


def test_email_config_errors(tmp_path: Path) -> None:
    from homeserver.config.errors import ConfigError

    with pytest.raises(ConfigError, match="notif_from"):
        make_config(tmp_path, email={"enable_notifs": True})
    with pytest.raises(ConfigError, match="smtp_port"):
        make_config(tmp_path, email={"smtp_port": 70000})
    with pytest.raises(ConfigError, match="exclusive"):
        make_config(tmp_path, email={"force_tls": True, "require_transport_security": True})
    assert make_config(tmp_path).email.enable_notifs is False


async def test_admin_added_addresses_get_email_pushers_and_lose_them(
    aiohttp_client: Any, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    """email.notif_for_new_users: an address set through the admin API gets an email pusher (as
    Synapse); removing the address removes it; a deactivated account keeps no pushers."""
    _inbox, port = smtp
    client = await aiohttp_client(create_app_from_config(_config(tmp_path, port)))
    admin = await User.new(client, "admin", admin=True)
    carol_id = "@carol:test.local"
    body = {"password": "pass-word-1", "threepids": [{"medium": "email", "address": "Carol@School.example"}]}
    await admin.call("PUT", f"/_synapse/admin/v2/users/{carol_id}", body, expect=201)
    pushers = await services_of(client).pushers.list_for_user(carol_id)
    assert [(p.kind, p.app_id, p.pushkey) for p in pushers] == [("email", "m.email", "carol@school.example")]

    await admin.call("PUT", f"/_synapse/admin/v2/users/{carol_id}", {"threepids": []})
    assert await services_of(client).pushers.list_for_user(carol_id) == []

    bob = await User.new(client, "bob")
    await add_email(client, bob.user_id, ADDRESS)
    assert [p["kind"] for p in await list_pushers(bob)] == ["email"]
    await bob.call(
        "POST",
        f"{V3}/account/deactivate",
        {"auth": {"type": "m.login.password", "user": bob.user_id, "password": "pass-word-1"}},
    )
    assert await services_of(client).pushers.list_for_user(bob.user_id) == []


async def test_no_automatic_pushers_without_notif_for_new_users(
    aiohttp_client: Any, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    _inbox, port = smtp
    client = await aiohttp_client(create_app_from_config(_config(tmp_path, port, notif_for_new_users=False)))
    bob = await User.new(client, "bob")
    await add_email(client, bob.user_id, ADDRESS)
    assert await list_pushers(bob) == []
