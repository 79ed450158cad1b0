"""Pushers, the notifications list and unread notification counts, black-box.

Endpoints: GET /pushers, POST /pushers/set, GET /notifications, and ``unread_notifications`` of
joined rooms in /sync (raised by events the push rules notify for, cleared by read receipts).
Every response is checked against the spec. The pusher URLs point at an unroutable gateway; no test
needs a push to be delivered.

No sleeps: the tests wait on /sync long-polls. Synapse works out notification counts asynchronously
after the event is persisted, so for Synapse only a count that lags behind the event's /sync response
is re-read by repeating the /sync from the token before the change (see ``expect_in_sync``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from .client import V3, q
from .harness import (
    Homeserver,
    SyncStream,
    User,
    assert_api_error,
    assert_event_schema,
    create_room,
    join_room,
    joined_room,
    put_state,
    room_path,
    send_event,
    send_text,
    sync_once,
    timeline_events,
)
from .spec_schema import (
    assert_error,
    assert_matches_spec,
    assert_request_matches_spec,
    assert_response_matches_spec,
)

PUSHERS = "/pushers"
PUSHERS_SET = "/pushers/set"
NOTIFICATIONS = "/notifications"
RECEIPT = "/rooms/{roomId}/receipt/{receiptType}/{eventId}"
RULE = "/pushrules/global/{kind}/{ruleId}"
GATEWAY = "https://push.compat.invalid/_matrix/push/v1/notify"


# --------------------------------------------------------------------------- pushers


def http_pusher(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "http",
        "app_id": "org.example.compat.ios",
        "pushkey": f"compat-{secrets.token_hex(8)}",
        "app_display_name": "Compat",
        "device_display_name": "Test phone",
        "lang": "en",
        "data": {"url": GATEWAY, "format": "event_id_only", "org.example.custom": "kept"},
    }
    body.update(overrides)
    return body


def set_pusher(user: User, body: dict[str, Any]) -> None:
    assert_request_matches_spec("pusher.yaml", PUSHERS_SET, "POST", body)
    resp = user.client.post(f"{V3}/pushers/set", body)
    assert assert_response_matches_spec(resp, "pusher.yaml", PUSHERS_SET) == {}


def delete_pusher(user: User, app_id: str, pushkey: str) -> None:
    set_pusher(user, {"kind": None, "app_id": app_id, "pushkey": pushkey})


def get_pushers(user: User) -> list[dict[str, Any]]:
    body = assert_response_matches_spec(user.client.get(f"{V3}/pushers"), "pusher.yaml", PUSHERS)
    pushers: list[dict[str, Any]] = body["pushers"]
    return pushers


def pusher_keys(user: User) -> set[tuple[str, str]]:
    return {(p["app_id"], p["pushkey"]) for p in get_pushers(user)}


def assert_pusher_is(pusher: dict[str, Any], sent: dict[str, Any]) -> None:
    for key in ("kind", "app_id", "pushkey", "app_display_name", "device_display_name", "lang", "data"):
        assert pusher[key] == sent[key], (key, pusher, sent)
    # Synapse reports an unset profile_tag as ""; absent is just as good.
    assert pusher.get("profile_tag", "") == sent.get("profile_tag", ""), pusher


def test_no_pushers_at_first(user: User) -> None:
    assert get_pushers(user) == []


def test_pushers_need_a_token(hs: Homeserver) -> None:
    assert_error(hs.client().get(f"{V3}/pushers"), 401, "M_MISSING_TOKEN")
    assert_error(hs.client().post(f"{V3}/pushers/set", http_pusher()), 401, "M_MISSING_TOKEN")


def test_set_replace_and_delete_http_pusher(user: User) -> None:
    first = http_pusher()
    set_pusher(user, first)
    (pusher,) = get_pushers(user)
    assert_pusher_is(pusher, first)

    # Same app_id and pushkey: the pusher is updated, not added.
    replaced = {**first, "lang": "de-DE", "device_display_name": "Other phone", "profile_tag": "compat"}
    set_pusher(user, replaced)
    (pusher,) = get_pushers(user)
    assert_pusher_is(pusher, replaced)

    # Another pushkey (or another app_id) is another pusher.
    second = http_pusher()
    third = http_pusher(app_id="org.example.compat.android", pushkey=first["pushkey"])
    set_pusher(user, second)
    set_pusher(user, third)
    by_key = {(p["app_id"], p["pushkey"]): p for p in get_pushers(user)}
    assert set(by_key) == {(p["app_id"], p["pushkey"]) for p in (first, second, third)}
    assert_pusher_is(by_key[(first["app_id"], first["pushkey"])], replaced)
    assert_pusher_is(by_key[(second["app_id"], second["pushkey"])], second)

    # kind null deletes exactly that pusher.
    delete_pusher(user, first["app_id"], first["pushkey"])
    assert pusher_keys(user) == {(second["app_id"], second["pushkey"]), (third["app_id"], third["pushkey"])}
    delete_pusher(user, second["app_id"], second["pushkey"])
    delete_pusher(user, third["app_id"], third["pushkey"])
    assert get_pushers(user) == []


def test_pushers_are_per_user_and_append(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    body = http_pusher()
    key = (body["app_id"], body["pushkey"])
    set_pusher(alice, body)
    assert pusher_keys(bob) == set()
    # Without "append", setting the same app_id + pushkey removes other users' pushers with them.
    set_pusher(bob, body)
    assert pusher_keys(bob) == {key}
    assert pusher_keys(alice) == set()
    # With "append": true both users keep one.
    set_pusher(alice, {**body, "append": True})
    assert pusher_keys(alice) == {key}
    assert pusher_keys(bob) == {key}


def test_pusher_missing_parameters(user: User) -> None:
    for missing in ("kind", "app_id", "pushkey", "app_display_name", "device_display_name", "lang", "data"):
        body = http_pusher()
        del body[missing]
        resp = user.client.post(f"{V3}/pushers/set", body)
        assert_api_error(resp, "pusher.yaml", PUSHERS_SET, 400, "M_MISSING_PARAM")
    # An http pusher needs data.url.
    resp = user.client.post(f"{V3}/pushers/set", http_pusher(data={"format": "event_id_only"}))
    assert_api_error(resp, "pusher.yaml", PUSHERS_SET, 400, "M_MISSING_PARAM")
    assert get_pushers(user) == []


def test_pusher_invalid_parameters(hs: Homeserver, user: User) -> None:
    def rejected(body: dict[str, Any], synapse_codes: tuple[str, ...] = ()) -> None:
        resp = user.client.post(f"{V3}/pushers/set", body)
        codes = ("M_INVALID_PARAM", *(synapse_codes if hs.is_synapse else ()))
        assert_api_error(resp, "pusher.yaml", PUSHERS_SET, 400, codes)
        assert (body["app_id"], body["pushkey"]) not in pusher_keys(user)

    # data.url "MUST be an HTTPS URL with a path of /_matrix/push/v1/notify". Synapse answers
    # these with 400 M_MISSING_PARAM ("Config Error: ...").
    rejected(http_pusher(data={"url": "https://push.compat.invalid/some/other/path"}), ("M_MISSING_PARAM",))
    rejected(http_pusher(data={"url": "not a url"}), ("M_MISSING_PARAM",))
    # A url that is not a string: "no usable url", so M_MISSING_PARAM is accepted for any server.
    resp = user.client.post(f"{V3}/pushers/set", http_pusher(data={"url": 42}))
    assert_api_error(resp, "pusher.yaml", PUSHERS_SET, 400, ("M_INVALID_PARAM", "M_MISSING_PARAM"))
    # data must be an object; Synapse: 400 M_MISSING_PARAM ("'url' required in data").
    resp = user.client.post(f"{V3}/pushers/set", http_pusher(data="https://push.compat.invalid/"))
    codes = ("M_INVALID_PARAM", "M_BAD_JSON", *(("M_MISSING_PARAM",) if hs.is_synapse else ()))
    assert_api_error(resp, "pusher.yaml", PUSHERS_SET, 400, codes)

    if hs.is_synapse:
        # Synapse accepts a "format" outside the schema's enum (["event_id_only"]), an app_id over
        # 64 characters and a pushkey over 512 bytes (the spec's maximum lengths).
        return
    rejected(http_pusher(data={"url": GATEWAY, "format": "compat_format"}))
    rejected(http_pusher(app_id="org.example." + "a" * 60))
    rejected(http_pusher(pushkey="k" * 513))
    # The limits themselves are allowed.
    body = http_pusher(app_id="org.example." + "a" * 52, pushkey="k" * 512)
    set_pusher(user, body)
    assert (body["app_id"], body["pushkey"]) in pusher_keys(user)


def test_pusher_for_each_device_of_the_user(hs: Homeserver, user: User) -> None:
    other_device = hs.login_ok(user)
    one, two = http_pusher(), http_pusher()
    set_pusher(user, one)
    set_pusher(other_device, two)
    # GET /pushers lists all the user's pushers, whichever device set them.
    expected = {(one["app_id"], one["pushkey"]), (two["app_id"], two["pushkey"])}
    assert pusher_keys(user) == expected
    assert pusher_keys(other_device) == expected


# --------------------------------------------------------------------------- notifications


def mention(user: User, text: str = "ping") -> dict[str, Any]:
    return {"msgtype": "m.text", "body": f"{text} {user.user_id}", "m.mentions": {"user_ids": [user.user_id]}}


def get_notifications(hs: Homeserver, user: User, **params: Any) -> dict[str, Any]:
    resp = user.client.get(f"{V3}/notifications", params=params or None)
    assert resp.status == 200, resp.describe()
    body: dict[str, Any] = resp.body
    checked = body
    if hs.is_synapse:
        # Synapse sends "profile_tag": null for a notification without one and "next_token": null
        # when there are no more results; the schema types both as strings (absent when unset).
        checked = {k: v for k, v in body.items() if not (k == "next_token" and v is None)}
        checked["notifications"] = [
            {k: v for k, v in n.items() if not (k == "profile_tag" and v is None)}
            for n in body["notifications"]
        ]
    assert_matches_spec("notifications.yaml", NOTIFICATIONS, "GET", 200, checked)
    for n in body["notifications"]:
        assert_event_schema(n["event"], n["room_id"])  # the event comes without its room_id
    return body


def is_highlight(actions: list[Any]) -> bool:
    for action in actions:
        if isinstance(action, dict) and action.get("set_tweak") == "highlight":
            return action.get("value", True) is True
    return False


def wait_for_notifications(
    hs: Homeserver,
    user: User,
    stream: SyncStream,
    predicate: Callable[[list[dict[str, Any]]], bool],
    deadline: float = 30.0,
    **params: Any,
) -> list[dict[str, Any]]:
    """GET /notifications until ``predicate(notifications)`` holds, long-polling /sync in between."""
    end = time.monotonic() + deadline
    while True:
        notifications: list[dict[str, Any]] = get_notifications(hs, user, **params)["notifications"]
        if predicate(notifications):
            return notifications
        if time.monotonic() > end:
            raise AssertionError(f"/notifications: condition not met within {deadline:.0f}s: {notifications}")
        stream.sync(timeout_ms=500)


def notified_ids(notifications: list[dict[str, Any]]) -> list[str]:
    return [n["event"]["event_id"] for n in notifications]


def three_in_a_room(hs: Homeserver) -> tuple[User, User, User, str]:
    """Three members, so the one-to-one rules do not apply and .m.rule.message notifies."""
    alice, bob, carol = hs.register(), hs.register(), hs.register()
    room_id = create_room(alice, preset="public_chat")
    join_room(bob, room_id)
    join_room(carol, room_id)
    return alice, bob, carol, room_id


def post_receipt(user: User, room_id: str, event_id: str, receipt_type: str = "m.read") -> None:
    resp = user.client.post(room_path(room_id, "receipt", receipt_type, event_id), {})
    assert_response_matches_spec(resp, "receipts.yaml", RECEIPT)


def test_notifications_list_and_highlight_filter(hs: Homeserver) -> None:
    alice, bob, _carol, room_id = three_in_a_room(hs)
    stream = SyncStream(bob)
    stream.sync()
    plain = send_text(alice, room_id, "hello everyone")
    mentioned = send_event(alice, room_id, mention(bob, "look at this"))
    stream.wait_for_event(room_id, mentioned)

    notifications = wait_for_notifications(
        hs, bob, stream, lambda ns: {plain, mentioned} <= set(notified_ids(ns))
    )
    by_id = {n["event"]["event_id"]: n for n in notifications}
    for event_id in (plain, mentioned):
        n = by_id[event_id]
        assert n["room_id"] == room_id
        assert n["read"] is False
        assert "notify" in n["actions"]
        assert n["event"]["sender"] == alice.user_id
        assert isinstance(n["ts"], int)
    assert is_highlight(by_id[mentioned]["actions"])
    assert not is_highlight(by_id[plain]["actions"])

    highlights = get_notifications(hs, bob, only="highlight")["notifications"]
    assert mentioned in notified_ids(highlights)
    assert plain not in notified_ids(highlights)
    assert all(is_highlight(n["actions"]) for n in highlights)

    # The sender is not notified about their own events.
    assert not {plain, mentioned} & set(notified_ids(get_notifications(hs, alice)["notifications"]))

    # Once Bob's read receipt covers them, both are listed as read.
    post_receipt(bob, room_id, mentioned)
    wait_for_notifications(
        hs,
        bob,
        stream,
        lambda ns: all(n["read"] for n in ns if n["event"]["event_id"] in (plain, mentioned)),
    )


def test_notifications_pagination(hs: Homeserver) -> None:
    alice, bob, _carol, room_id = three_in_a_room(hs)
    stream = SyncStream(bob)
    stream.sync()
    sent = [send_text(alice, room_id, f"message {i}") for i in range(3)]
    stream.wait_for_event(room_id, sent[-1])
    wait_for_notifications(hs, bob, stream, lambda ns: set(sent) <= set(notified_ids(ns)))

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    for _ in range(10):
        body = get_notifications(hs, bob, **params)
        assert len(body["notifications"]) <= 1
        seen.extend(notified_ids(body["notifications"]))
        if not body.get("next_token") or not body["notifications"]:
            break
        params["from"] = body["next_token"]
    assert len(seen) == len(set(seen)), seen
    assert set(sent) <= set(seen)

    resp = bob.client.get(f"{V3}/notifications", params={"from": "compat-not-a-token"})
    # The spec documents no error for this; Synapse answers 400 M_UNKNOWN, we 400 M_INVALID_PARAM.
    assert_error(resp, 400, ("M_INVALID_PARAM", "M_UNKNOWN"))


def test_notifications_need_a_token(hs: Homeserver) -> None:
    assert_error(hs.client().get(f"{V3}/notifications"), 401, "M_MISSING_TOKEN")


# --------------------------------------------------------------------------- unread counts in /sync


Counts = tuple[int, int]


def unread_counts(body: dict[str, Any], room_id: str) -> Counts | None:
    """(notification_count, highlight_count) of the joined room, None when the room or the counts
    are not in this response (an incremental sync leaves out rooms without changes)."""
    room = joined_room(body, room_id)
    if room is None or "unread_notifications" not in room:
        return None
    counts = room["unread_notifications"]
    return counts.get("notification_count", 0), counts.get("highlight_count", 0)


def resync(
    stream: SyncStream, since: str | None, read: Callable[[dict[str, Any]], Any], expected: Any, what: str
) -> None:
    """Synapse only: repeat the /sync from ``since`` (the room is in it: it changed after that token)
    until ``read(response)`` is ``expected``. Each request carries a filter of its own, since Synapse
    answers a repeated identical /sync from its response cache."""
    base = stream.filter if isinstance(stream.filter, dict) else {}
    end = time.monotonic() + 30.0
    while True:
        unique = {**base, "account_data": {"not_types": [f"org.example.compat.{secrets.token_hex(4)}"]}}
        params: dict[str, Any] = {"filter": unique, "timeout": 0}
        if since is not None:
            params["since"] = since
        got = read(sync_once(stream.user, **params))
        if got == expected:
            return
        if time.monotonic() > end:
            raise AssertionError(f"{what}: expected {expected}, still {got}")


def expect_in_sync(
    hs: Homeserver,
    stream: SyncStream,
    arrived: Callable[[dict[str, Any]], bool],
    read: Callable[[dict[str, Any]], Any],
    expected: Any,
    what: str,
) -> None:
    """Sync until ``arrived(response)`` (the event or receipt is in it); that response must carry the
    new counts ("The updated notification count from a new event MUST appear in the same /sync
    response as the event itself"; counts MUST be updated as they change)."""
    before = stream.since
    body = stream.until(lambda b: b if arrived(b) else None)
    got = read(body)
    if got == expected:
        return
    assert hs.is_synapse, f"{what}: expected {expected}, got {got} in {body}"
    # Synapse computes the counts asynchronously: they may lag behind the /sync carrying the event.
    resync(stream, before, read, expected, what)


def expect_counts(
    hs: Homeserver,
    stream: SyncStream,
    room_id: str,
    arrived: Callable[[dict[str, Any]], bool],
    expected: Counts,
) -> None:
    """The room's ``unread_notifications`` in the /sync response where ``arrived`` first holds."""
    expect_in_sync(
        hs,
        stream,
        arrived,
        lambda b: unread_counts(b, room_id),
        expected,
        f"unread_notifications of {room_id}",
    )


def has_event(room_id: str, event_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: event_id in [e["event_id"] for e in timeline_events(body, room_id)]


def has_receipt(room_id: str, event_id: str, user_id: str) -> Callable[[dict[str, Any]], bool]:
    def check(body: dict[str, Any]) -> bool:
        room = joined_room(body, room_id) or {}
        for event in (room.get("ephemeral") or {}).get("events", []):
            if event.get("type") == "m.receipt":
                readers = event["content"].get(event_id, {})
                if any(user_id in users for users in readers.values()):
                    return True
        return False

    return check


def test_unread_counts_rise_and_clear_on_read_receipt(hs: Homeserver) -> None:
    alice, bob, _carol, room_id = three_in_a_room(hs)
    stream = SyncStream(bob)
    first = stream.sync()
    assert unread_counts(first, room_id) in (None, (0, 0))

    one = send_text(alice, room_id, "one")
    expect_counts(hs, stream, room_id, has_event(room_id, one), (1, 0))
    two = send_text(alice, room_id, "two")
    expect_counts(hs, stream, room_id, has_event(room_id, two), (2, 0))
    three = send_event(alice, room_id, mention(bob))
    expect_counts(hs, stream, room_id, has_event(room_id, three), (3, 1))

    # Reading up to the second message leaves the third unread.
    post_receipt(bob, room_id, two)
    expect_counts(hs, stream, room_id, has_receipt(room_id, two, bob.user_id), (1, 1))
    # A private read receipt clears notifications too.
    post_receipt(bob, room_id, three, "m.read.private")
    expect_counts(hs, stream, room_id, has_receipt(room_id, three, bob.user_id), (0, 0))

    # The sender's own messages never count for them.
    alice_counts = unread_counts(
        SyncStream(alice, filter={"room": {"timeline": {"limit": 1}}}).sync(), room_id
    )
    assert alice_counts in (None, (0, 0)), alice_counts


def thread_counts(body: dict[str, Any], room_id: str) -> tuple[Counts | None, dict[str, Counts]]:
    """Main-timeline counts and the per-thread ones (threads without notifications dropped: "If a
    thread does not have any notifications it can be omitted")."""
    room = joined_room(body, room_id) or {}
    threads = {
        root: (c.get("notification_count", 0), c.get("highlight_count", 0))
        for root, c in (room.get("unread_thread_notifications") or {}).items()
    }
    return unread_counts(body, room_id), {root: c for root, c in threads.items() if c != (0, 0)}


def test_unread_counts_per_thread(hs: Homeserver) -> None:
    alice, bob, _carol, room_id = three_in_a_room(hs)
    stream = SyncStream(bob, filter={"room": {"timeline": {"unread_thread_notifications": True}}})
    stream.sync()
    root = send_text(alice, room_id, "thread root")
    in_thread = {"rel_type": "m.thread", "event_id": root}
    reply = send_event(alice, room_id, {"msgtype": "m.text", "body": "reply", "m.relates_to": in_thread})
    mentioning_reply = send_event(alice, room_id, {**mention(bob), "m.relates_to": in_thread})
    main = send_text(alice, room_id, "back in the main timeline")

    def expect(
        arrived: Callable[[dict[str, Any]], bool], main_counts: Counts, threads: dict[str, Counts]
    ) -> None:
        expect_in_sync(
            hs, stream, arrived, lambda b: thread_counts(b, room_id), (main_counts, threads), "thread counts"
        )

    # With unread_thread_notifications the room's counts cover the main timeline only.
    expect(has_event(room_id, main), (2, 0), {root: (2, 1)})
    # A threaded receipt reads its thread only, up to the receipt's event.
    resp = bob.client.post(room_path(room_id, "receipt", "m.read", reply), {"thread_id": root})
    assert_response_matches_spec(resp, "receipts.yaml", RECEIPT)
    expect(has_receipt(room_id, reply, bob.user_id), (2, 0), {root: (1, 1)})
    resp = bob.client.post(room_path(room_id, "receipt", "m.read", main), {"thread_id": "main"})
    assert_response_matches_spec(resp, "receipts.yaml", RECEIPT)
    expect(has_receipt(room_id, main, bob.user_id), (0, 0), {root: (1, 1)})
    # An unthreaded receipt reads everything up to its event, in every thread.
    post_receipt(bob, room_id, mentioning_reply)
    expect(has_receipt(room_id, mentioning_reply, bob.user_id), (0, 0), {})


def test_unread_counts_follow_push_rules(hs: Homeserver) -> None:
    alice, bob, _carol, room_id = three_in_a_room(hs)
    quiet_room = create_room(alice, preset="public_chat")
    join_room(bob, quiet_room)
    # A room rule with no actions: nothing in that room notifies Bob.
    body: dict[str, Any] = {"actions": []}
    assert_request_matches_spec("pushrules.yaml", RULE, "PUT", body)
    resp = bob.client.put(f"{V3}/pushrules/global/room/{q(quiet_room)}", body)
    assert_response_matches_spec(resp, "pushrules.yaml", RULE)
    # A content rule that highlights a keyword.
    keyword = f"compatkw{secrets.token_hex(3)}"
    body = {"pattern": keyword, "actions": ["notify", {"set_tweak": "highlight"}]}
    assert_request_matches_spec("pushrules.yaml", RULE, "PUT", body)
    resp = bob.client.put(f"{V3}/pushrules/global/content/{q('compat_' + keyword)}", body)
    assert_response_matches_spec(resp, "pushrules.yaml", RULE)

    stream = SyncStream(bob)
    stream.sync()
    # (Content rules are checked before room rules, so this message carries no keyword.)
    muted = send_text(alice, quiet_room, "nobody hears this")
    notice = send_event(alice, room_id, {"msgtype": "m.notice", "body": "a bot speaks"})  # suppress_notices
    expect_counts(hs, stream, room_id, has_event(room_id, notice), (0, 0))
    keyworded = send_text(alice, room_id, f"the {keyword.upper()} matches case-insensitively")
    expect_counts(hs, stream, room_id, has_event(room_id, keyworded), (1, 1))
    # Content rules match at word boundaries only: inside a longer word is .m.rule.message's business.
    inside = send_text(alice, room_id, f"x{keyword}y and {keyword}_z")
    expect_counts(hs, stream, room_id, has_event(room_id, inside), (2, 1))

    notifications = wait_for_notifications(hs, bob, stream, lambda ns: keyworded in notified_ids(ns))
    assert muted not in notified_ids(notifications)
    assert notice not in notified_ids(notifications)
    latest = SyncStream(
        bob, filter={"account_data": {"not_types": [f"compat.{secrets.token_hex(4)}"]}}
    ).sync()
    assert unread_counts(latest, quiet_room) in (None, (0, 0))


# --------------------------------------------------------------------------- what the default rules notify


def test_default_rules_decide_what_notifies(hs: Homeserver) -> None:
    alice, bob, carol, room_id = three_in_a_room(hs)  # Alice created the room (power 100), Carol has 0
    stream = SyncStream(bob)
    stream.sync()
    original = send_text(alice, room_id, "original")
    send_event(  # .m.rule.suppress_edits
        alice,
        room_id,
        {
            "msgtype": "m.text",
            "body": "* edited",
            "m.new_content": {"msgtype": "m.text", "body": "edited"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )
    send_event(  # .m.rule.reaction
        carol,
        room_id,
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "+1"}},
        "m.reaction",
    )
    send_event(alice, room_id, {"msgtype": "m.notice", "body": "a bot"})  # .m.rule.suppress_notices
    # .m.rule.is_room_mention needs the sender to have the "room" notification power level (50).
    room_mention = {"msgtype": "m.text", "body": "hello all", "m.mentions": {"room": True}}
    by_carol = send_event(carol, room_id, room_mention)
    by_alice = send_event(alice, room_id, room_mention)
    join_room(hs.register(), room_id)  # .m.rule.member_event
    put_state(alice, room_id, "m.room.topic", {"topic": "no rule matches a topic change"})
    marker = send_text(carol, room_id, "marker")

    expect_counts(hs, stream, room_id, has_event(room_id, marker), (4, 1))
    notifications = wait_for_notifications(hs, bob, stream, lambda ns: marker in notified_ids(ns))
    in_room = [n for n in notifications if n["room_id"] == room_id]
    assert sorted(notified_ids(in_room)) == sorted([original, by_carol, by_alice, marker])
    assert [n["event"]["event_id"] for n in in_room if is_highlight(n["actions"])] == [by_alice]


def test_invite_and_one_to_one_rules(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    stream = SyncStream(bob)
    stream.sync()
    room_id = create_room(alice, preset="trusted_private_chat")
    resp = alice.client.post(room_path(room_id, "invite"), {"user_id": bob.user_id})
    assert_response_matches_spec(resp, "inviting.yaml", "/rooms/{roomId}/invite ")

    def invite_notification(ns: list[dict[str, Any]]) -> bool:
        return any(
            n["room_id"] == room_id
            and n["event"]["type"] == "m.room.member"
            and n["event"].get("state_key") == bob.user_id
            for n in ns
        )

    notifications = wait_for_notifications(hs, bob, stream, invite_notification)  # .m.rule.invite_for_me
    (invite,) = [n for n in notifications if n["room_id"] == room_id]
    assert invite["event"]["content"]["membership"] == "invite"
    assert {"set_tweak": "sound", "value": "default"} in invite["actions"]

    join_room(bob, room_id)

    def own_join(body: dict[str, Any]) -> bool:
        return any(
            e["type"] == "m.room.member"
            and e.get("state_key") == bob.user_id
            and e["content"].get("membership") == "join"
            for e in timeline_events(body, room_id)
        )

    # "When the user updates their read receipt (either by using the API or by sending an event),
    # notifications prior to and including that event MUST be marked as read": Bob's join is an
    # event he sent after the invite, so the invite no longer counts as unread.
    expect_counts(hs, stream, room_id, own_join, (0, 0))
    message = send_text(alice, room_id, "just us two")  # .m.rule.room_one_to_one
    expect_counts(hs, stream, room_id, has_event(room_id, message), (1, 0))
    notifications = wait_for_notifications(hs, bob, stream, lambda ns: message in notified_ids(ns))
    (note,) = [n for n in notifications if n["event"]["event_id"] == message]
    assert {"set_tweak": "sound", "value": "default"} in note["actions"]
    assert not is_highlight(note["actions"])


def test_disabled_rules_and_the_master_rule(hs: Homeserver) -> None:
    alice, bob, _carol, room_id = three_in_a_room(hs)

    def set_enabled(kind: str, rule_id: str, enabled: bool) -> None:
        resp = bob.client.put(f"{V3}/pushrules/global/{kind}/{q(rule_id)}/enabled", {"enabled": enabled})
        assert_response_matches_spec(resp, "pushrules.yaml", RULE + "/enabled")

    stream = SyncStream(bob)
    stream.sync()
    # A disabled rule never matches: the mention falls through to .m.rule.message (no highlight).
    set_enabled("override", ".m.rule.is_user_mention", False)
    unhighlighted = send_event(alice, room_id, mention(bob))
    expect_counts(hs, stream, room_id, has_event(room_id, unhighlighted), (1, 0))
    set_enabled("override", ".m.rule.is_user_mention", True)
    highlighted = send_event(alice, room_id, mention(bob))
    expect_counts(hs, stream, room_id, has_event(room_id, highlighted), (2, 1))

    # .m.rule.master turns every notification off, mentions included.
    set_enabled("override", ".m.rule.master", True)
    silenced = [send_text(alice, room_id, "unheard"), send_event(alice, room_id, mention(bob))]
    expect_counts(hs, stream, room_id, has_event(room_id, silenced[-1]), (2, 1))
    set_enabled("override", ".m.rule.master", False)
    marker = send_text(alice, room_id, "heard again")
    expect_counts(hs, stream, room_id, has_event(room_id, marker), (3, 1))

    notifications = wait_for_notifications(hs, bob, stream, lambda ns: marker in notified_ids(ns))
    assert not set(silenced) & set(notified_ids(notifications))
    by_id = {n["event"]["event_id"]: n for n in notifications}
    assert not is_highlight(by_id[unhighlighted]["actions"])
    assert is_highlight(by_id[highlighted]["actions"])
