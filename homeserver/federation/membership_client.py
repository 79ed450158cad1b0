"""Our users joining, knocking on and leaving rooms that live on other servers, and inviting
users of other servers (the joining side of server-server-api.md "Joining Rooms" and friends).

Join: `make_join` on each candidate server in turn (skipping those in backoff) until one answers
with a usable template, build and sign the join (room version from the answer), `send_join` v2,
verify the returned state and auth chain (`remote_state.verify_remote_state`), then persist the
auth chain and state as outliers and the join as a REMOTE_NEW event with that state before it
(`EventPersister.persist_remote_room`): from then on the room is a room like any other here.

Knock, and leaving a room we only know by an invite or a knock: the same make/send handshake; the
resulting member event is stored as an out-of-band outlier (the user's membership only). When no
server can be reached to reject an invite, the rejection is made locally (as Synapse does), so a
user is never stuck with an invite they cannot decline.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.crypto.event_signing import verify_event_signature
from homeserver.crypto.keyring import Keyring
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.signing import SignatureError
from homeserver.events import constants as c
from homeserver.events.builder import build_event
from homeserver.events.context import EventContext, EventKind
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import (
    MAX_RESPONSE_SIZE,
    FederationClient,
    FederationDenied,
    FederationError,
    RemoteHttpError,
)
from homeserver.federation.membership_server import federation_pdu
from homeserver.federation.pdu_checks import check_pdu
from homeserver.federation.remote_state import verify_remote_state
from homeserver.federation.room_events import (
    AuthError,
    OwnKeyFirst,
    auth_against_state,
    room_version_or_error,
    supported_versions,
)
from homeserver.persist.persister import EventPersister, PersistedEvent
from homeserver.state.service import StateService
from homeserver.storage.stores.events import EventStore

logger = logging.getLogger(__name__)

# A client waits for a join; each handshake request is capped so a dead server costs little.
HANDSHAKE_TIMEOUT = 30.0
SEND_JOIN_TIMEOUT = 60.0
# A large room's state and auth chain (Synapse allows the same for send_join responses).
SEND_JOIN_MAX_RESPONSE = 500 * 1024 * 1024


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _unreachable() -> MatrixError:
    return MatrixError(502, "M_UNKNOWN", "Failed to reach any server in the room")


class RemoteMembership:
    def __init__(
        self,
        client: FederationClient,
        persister: EventPersister,
        state: StateService,
        events: EventStore,
        clock: Clock,
        *,
        server_name: str,
        signing_key: ServerSigningKey,
        keyring: Callable[[], Keyring],
    ) -> None:
        self.client = client
        self.persister = persister
        # Set by the container once the inbound pipeline exists: on a re-join, outliers the join
        # follows (our invite) become timeline events first (FederationEventHandler).
        self.place_outlier_prevs: Callable[[str, Event], Awaitable[None]] | None = None
        self.state = state
        self.events = events
        self.clock = clock
        self.server_name = server_name
        self.signing_key = signing_key
        self._keyring = keyring

    def keyring(self) -> OwnKeyFirst:
        return OwnKeyFirst(self._keyring(), self.server_name, self.signing_key)

    # -- the handshake ---------------------------------------------------------------------------

    async def _make(
        self, servers: Sequence[str], kind: str, room_id: str, user_id: str
    ) -> tuple[str, RoomVersion, dict[str, Any]]:
        """(server, room version, template) from the first server that gives a usable template.
        A 4xx from a server is remembered and passed on if no other server does better."""
        membership = {"make_join": c.JOIN, "make_leave": c.LEAVE, "make_knock": c.KNOCK}[kind]
        args = {"ver": supported_versions()} if membership != c.LEAVE else None
        path = f"/_matrix/federation/v1/{kind}/{_q(room_id)}/{_q(user_id)}"
        last_error: MatrixError | None = None
        for server in dict.fromkeys(servers):
            if server == self.server_name:
                continue
            try:
                body = await self.client.get_json(server, path, args, time_limit=HANDSHAKE_TIMEOUT)
            except RemoteHttpError as exc:
                if 400 <= exc.status < 500 and isinstance(exc.body, Mapping):
                    extra = {"room_version": exc.body["room_version"]} if "room_version" in exc.body else {}
                    last_error = MatrixError(exc.status, exc.errcode, str(exc.body.get("error", "")), **extra)
                logger.info("%s of %s at %s failed: %s", kind, room_id, server, exc)
                continue
            except FederationDenied as exc:
                # Not a failure of the room's servers: this server may not federate with it.
                last_error = last_error or MatrixError(403, "M_FORBIDDEN", f"Federation denied with {server}")
                logger.info("%s of %s at %s refused: %s", kind, room_id, server, exc)
                continue
            except (FederationError, NotRetryingDestination) as exc:
                logger.info("%s of %s at %s failed: %s", kind, room_id, server, exc)
                continue
            try:
                version, template = _parse_template(body, room_id, user_id, membership)
            except MatrixError as exc:
                last_error = exc
                logger.info("%s of %s at %s: unusable template: %s", kind, room_id, server, exc.error)
                continue
            return server, version, template
        raise last_error or _unreachable()

    def _build(
        self,
        version: RoomVersion,
        template: Mapping[str, Any],
        room_id: str,
        user_id: str,
        content: dict[str, Any],
    ) -> Event:
        return build_event(
            version,
            room_id=room_id,
            sender=user_id,
            type=c.MEMBER,
            content=content,
            state_key=user_id,
            prev_event_ids=template["prev_events"],
            auth_event_ids=template["auth_events"],
            depth=template["depth"],
            origin_server_ts=self.clock.time_ms(),
            server_name=self.server_name,
            signing_key=self.signing_key,
        )

    async def _put(
        self, server: str, path: str, body: Mapping[str, Any], limit: float, max_size: int = MAX_RESPONSE_SIZE
    ) -> Any:
        try:
            return await self.client.request(
                "PUT", server, path, None, body, time_limit=limit, max_response_size=max_size
            )
        except RemoteHttpError as exc:
            if 400 <= exc.status < 500 and isinstance(exc.body, Mapping):
                raise MatrixError(exc.status, exc.errcode, str(exc.body.get("error", ""))) from exc
            raise _unreachable() from exc
        except (FederationError, NotRetryingDestination) as exc:
            logger.info("PUT %s at %s failed: %s", path, server, exc)
            raise _unreachable() from exc

    # -- join ------------------------------------------------------------------------------------

    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> PersistedEvent:
        server, version, template = await self._make(servers, "make_join", room_id, user_id)
        join_content = {**content, "membership": c.JOIN}
        authoriser = template["content"].get(c.AUTHORISING_USER)
        if isinstance(authoriser, str):
            join_content[c.AUTHORISING_USER] = authoriser
        event = self._build(version, template, room_id, user_id, join_content)
        body = await self._put(
            server,
            f"/_matrix/federation/v2/send_join/{_q(room_id)}/{_q(event.event_id)}",
            federation_pdu(event),
            SEND_JOIN_TIMEOUT,
            SEND_JOIN_MAX_RESPONSE,
        )
        if not isinstance(body, Mapping):
            raise _unreachable()
        keyring = self.keyring()
        if isinstance(authoriser, str):
            # A restricted join: the resident server's countersigned copy is the event.
            signed = body.get("event")
            if not isinstance(signed, Mapping):
                raise MatrixError(502, "M_UNKNOWN", "The resident server did not countersign the join")
            countersigned = await check_pdu(signed, version, keyring)
            if countersigned.event_id != event.event_id:
                raise MatrixError(502, "M_UNKNOWN", "The resident server changed the join")
            event = countersigned
        remote = await verify_remote_state(
            version, room_id, body.get("state"), body.get("auth_chain"), keyring
        )
        try:
            auth_against_state(version, event, remote.state_events())
        except AuthError as exc:
            raise MatrixError(
                403, "M_FORBIDDEN", f"The join is not allowed by the room state: {exc.reason}"
            ) from exc
        if self.place_outlier_prevs is not None:
            await self.place_outlier_prevs(server, event)
        known = await self.events.get_events([e.event_id for e in remote.events])
        contexts = [EventContext(e, EventKind.OUTLIER, {}) for e in remote.events if e.event_id not in known]
        contexts.append(EventContext(event, EventKind.REMOTE_NEW, dict(remote.state)))
        create = remote.state_events()[(c.CREATE, "")]
        persisted = await self.persister.persist_remote_room(version, create.sender, contexts)
        return persisted[-1]

    # -- knock and leave (out of band) -----------------------------------------------------------

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> PersistedEvent:
        server, version, template = await self._make(servers, "make_knock", room_id, user_id)
        event = self._build(version, template, room_id, user_id, {**content, "membership": c.KNOCK})
        body = await self._put(
            server,
            f"/_matrix/federation/v1/send_knock/{_q(room_id)}/{_q(event.event_id)}",
            federation_pdu(event),
            HANDSHAKE_TIMEOUT,
        )
        stripped = body.get("knock_room_state") if isinstance(body, Mapping) else None
        stripped = [s for s in stripped if isinstance(s, dict)] if isinstance(stripped, list) else []
        return await self._out_of_band(version, event, {"knock_room_state": stripped})

    async def leave(
        self,
        user_id: str,
        room_id: str,
        servers: Sequence[str],
        content: Mapping[str, Any],
        membership_event: Event,
    ) -> PersistedEvent:
        """Reject an invite or withdraw a knock in a room this server is not in."""
        leave_content = {**content, "membership": c.LEAVE}
        try:
            server, version, template = await self._make(servers, "make_leave", room_id, user_id)
            event = self._build(version, template, room_id, user_id, leave_content)
            await self._put(
                server,
                f"/_matrix/federation/v2/send_leave/{_q(room_id)}/{_q(event.event_id)}",
                federation_pdu(event),
                HANDSHAKE_TIMEOUT,
            )
        except MatrixError as exc:
            logger.info("rejecting %s remotely failed (%s): rejecting locally", room_id, exc.error)
            version = membership_event.room_version
            event = build_event(
                version,
                room_id=room_id,
                sender=user_id,
                type=c.MEMBER,
                content=leave_content,
                state_key=user_id,
                prev_event_ids=[membership_event.event_id],
                auth_event_ids=[membership_event.event_id],
                depth=membership_event.depth + 1,
                origin_server_ts=self.clock.time_ms(),
                server_name=self.server_name,
                signing_key=self.signing_key,
            )
        return await self._out_of_band(version, event, None)

    async def _out_of_band(
        self, version: RoomVersion, event: Event, unsigned: Mapping[str, Any] | None
    ) -> PersistedEvent:
        if unsigned:
            event = Event({**event.pdu, "unsigned": {**event.unsigned, **unsigned}}, version, event.event_id)
        context = EventContext(event, EventKind.OUTLIER, {}, out_of_band_membership=True)
        return (await self.persister.persist_remote_room(version, event.sender, [context]))[0]

    # -- invites of remote users -----------------------------------------------------------------

    async def invite(self, event: Event) -> Event:
        """Send our invite to the invitee's server (invite v2); the event with its countersignature."""
        version = event.room_version
        invitee_server = ids.server_of(event.state_key or "")
        body = {
            "room_version": version.identifier,
            "event": federation_pdu(event),
            "invite_room_state": list(event.unsigned.get("invite_room_state", [])),
        }
        path = f"/_matrix/federation/v2/invite/{_q(event.room_id)}/{_q(event.event_id)}"
        response = await self._put(invitee_server, path, body, HANDSHAKE_TIMEOUT)
        returned = response.get("event") if isinstance(response, Mapping) else None
        if not isinstance(returned, Mapping):
            raise MatrixError(502, "M_UNKNOWN", "The invitee's server sent no signed invite")
        checked = await check_pdu(returned, version, self.keyring())
        if checked.event_id != event.event_id:
            raise MatrixError(502, "M_UNKNOWN", "The invitee's server changed the invite")
        signatures = returned.get("signatures")
        await self._check_countersignature(checked, invitee_server)
        assert isinstance(signatures, Mapping)
        return Event({**event.pdu, "signatures": dict(signatures)}, version, event.event_id)

    async def _check_countersignature(self, event: Event, server: str) -> None:
        """The invitee's server signed the invite (check_pdu checks only the required signers)."""
        by_server = event.signatures.get(server)
        key_ids = [k for k in by_server if k.startswith("ed25519:")] if isinstance(by_server, Mapping) else []
        keyring = self._keyring()
        for key_id in key_ids:
            key = await keyring.get_verify_key(server, key_id, valid_at_ts=0)
            if key is None:
                continue
            try:
                verify_event_signature(event.room_version, event.pdu, server, key_id, key)
            except SignatureError:
                break
            return
        raise MatrixError(502, "M_UNKNOWN", "The invitee's server did not sign the invite")


def _parse_template(
    body: Any, room_id: str, user_id: str, membership: str
) -> tuple[RoomVersion, dict[str, Any]]:
    """The checks the spec asks of a make_* answer; raises MatrixError(502) if unusable."""
    if not isinstance(body, Mapping) or not isinstance(body.get("event"), Mapping):
        raise MatrixError(502, "M_UNKNOWN", "Malformed make_* response")
    version = room_version_or_error(body.get("room_version", "1"))
    template = dict(body["event"])
    content = template.get("content")
    ok = (
        template.get("room_id") == room_id
        and template.get("sender") == user_id
        and template.get("state_key") == user_id
        and template.get("type") == c.MEMBER
        and isinstance(content, Mapping)
        and content.get("membership") == membership
        and isinstance(template.get("prev_events"), list)
        and all(isinstance(e, str) for e in template["prev_events"])
        and isinstance(template.get("auth_events"), list)
        and all(isinstance(e, str) for e in template["auth_events"])
        and isinstance(template.get("depth"), int)
        and not isinstance(template.get("depth"), bool)
    )
    if not ok:
        raise MatrixError(502, "M_UNKNOWN", "Malformed make_* template")
    return version, template
