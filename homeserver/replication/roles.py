"""What each process role serves, which streams it follows and which background work it runs.

`main` writes events and every stream; every other role reads the database, follows the streams it
needs over Redis (replication/redis_link.py) and hands writes to main (docs/scale-out.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.core.streams import Stream

ALL_STREAMS = frozenset(s for s in Stream if s is not Stream.INVITES)

# Client routes (by operationId) a client_reader answers itself although they are not GETs: they
# only read. Every other non-GET client route is forwarded to main.
READ_ONLY_POSTS = frozenset({"search", "queryKeys", "searchUserDirectory", "queryPublicRooms"})


@dataclass(frozen=True, slots=True)
class RoleSpec:
    streams: frozenset[Stream]  # followed over Redis (nothing else is subscribed)
    client: str  # "all" (main), "read" (reads here, writes forwarded), "none"
    federation: str  # "all", "read" (reads here, PUT/POST forwarded), "none"
    media: bool


ROLE_SPECS: dict[str, RoleSpec] = {
    "main": RoleSpec(ALL_STREAMS, "all", "all", True),
    "client_reader": RoleSpec(ALL_STREAMS, "read", "none", False),
    "federation_inbound": RoleSpec(frozenset({Stream.EVENTS}), "none", "read", False),
    # PDUs from events; EDUs from typing, receipts, presence and device lists (to-device messages
    # for other servers reach it through the database outbox, see federation/sender/outbox.py)
    "federation_sender": RoleSpec(
        frozenset({Stream.EVENTS, Stream.TYPING, Stream.RECEIPTS, Stream.PRESENCE, Stream.DEVICE_LISTS}),
        "none",
        "none",
        False,
    ),
    # (read receipts reach pushers as "read" invalidations, sent after the counts moved)
    "pusher": RoleSpec(frozenset({Stream.EVENTS}), "none", "none", False),
    "appservice": RoleSpec(
        frozenset({Stream.EVENTS, Stream.RECEIPTS, Stream.PRESENCE, Stream.TO_DEVICE}), "none", "none", False
    ),
    "media": RoleSpec(frozenset(), "none", "none", True),
    "background": RoleSpec(frozenset({Stream.EVENTS}), "none", "none", False),
}


def serves_locally(spec: RoleSpec, method: str, name: str, kind: str) -> bool | None:
    """True: this role answers the route; False: it forwards it to main; None: not mounted here
    (404 M_UNRECOGNIZED). `kind` is "client" or "federation"."""
    mode = spec.client if kind == "client" else spec.federation
    if mode == "all":
        return True
    if mode == "none":
        return None
    if method in ("GET", "HEAD") or (kind == "client" and name in READ_ONLY_POSTS):
        return True
    return False
