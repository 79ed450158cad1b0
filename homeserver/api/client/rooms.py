"""Rooms: creation, membership, sending and state (create_room.yaml, joining.yaml, inviting.yaml,
leaving.yaml, kicking.yaml, banning.yaml, knocking.yaml, list_joined_rooms.yaml, rooms.yaml,
room_send.yaml, room_state.yaml, redaction.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden
from homeserver.events import constants as c
from homeserver.http.params import get_str
from homeserver.http.routing import ApiRequest, Router
from homeserver.services.restrictions import fake_event_id

if TYPE_CHECKING:
    from homeserver.persist.persister import PersistedEvent

routes = Router()


def _room_id(req: ApiRequest) -> str:
    room_id = req.path["roomId"]
    if not ids.is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room id {room_id!r}")
    return room_id


async def _reason(req: ApiRequest) -> tuple[dict[str, Any], str | None]:
    body = await req.json()
    return body, get_str(body, "reason")


# -- creation ---------------------------------------------------------------------------------------


@routes.post("/createRoom")
async def createRoom(req: ApiRequest) -> Any:
    body = await req.json()
    room_id, alias = await req.services.room_service.create_room(req.user.user_id, body)
    response: dict[str, Any] = {"room_id": room_id}
    if alias is not None:
        response["room_alias"] = alias
    return response


# -- membership -------------------------------------------------------------------------------------


def _via(req: ApiRequest) -> list[str]:
    """Servers to join or knock through: `via` (v1.12) and the older `server_name`."""
    return [*req.query.getall("via", []), *req.query.getall("server_name", [])]


@routes.post("/rooms/{roomId}/join")
async def joinRoomById(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    _, reason = await _reason(req)
    await req.services.membership.join(req.user.user_id, room_id, reason, via=_via(req))
    return {"room_id": room_id}


async def _resolve_room(req: ApiRequest) -> tuple[str, list[str]]:
    """The room id, and the servers to reach it through (the alias's, then the client's)."""
    target = req.path["roomIdOrAlias"]
    if target.startswith("#"):
        found = await req.services.directory.resolve_alias(target)
        return found["room_id"], [*found["servers"], *_via(req)]
    return await req.services.directory.resolve_room_id_or_alias(target), _via(req)


@routes.post("/join/{roomIdOrAlias}")
async def joinRoom(req: ApiRequest) -> Any:
    _, reason = await _reason(req)
    room_id, via = await _resolve_room(req)
    await req.services.membership.join(req.user.user_id, room_id, reason, via=via)
    return {"room_id": room_id}


@routes.post("/rooms/{roomId}/invite")
async def inviteUser(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    body, reason = await _reason(req)
    target = get_str(body, "user_id", required=True)
    await req.services.membership.invite(req.user.user_id, room_id, target, reason=reason)
    return {}


@routes.post("/rooms/{roomId}/leave")
async def leaveRoom(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    _, reason = await _reason(req)
    await req.services.membership.leave(req.user.user_id, room_id, reason)
    return {}


@routes.post("/rooms/{roomId}/forget")
async def forgetRoom(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    await req.services.membership.forget(req.user.user_id, room_id)
    return {}


@routes.post("/rooms/{roomId}/kick")
async def kick(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    body, reason = await _reason(req)
    target = get_str(body, "user_id", required=True)
    await req.services.membership.kick(req.user.user_id, room_id, target, reason)
    return {}


@routes.post("/rooms/{roomId}/ban")
async def ban(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    body, reason = await _reason(req)
    target = get_str(body, "user_id", required=True)
    await req.services.membership.ban(req.user.user_id, room_id, target, reason)
    return {}


@routes.post("/rooms/{roomId}/unban")
async def unban(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    body, reason = await _reason(req)
    target = get_str(body, "user_id", required=True)
    await req.services.membership.unban(req.user.user_id, room_id, target, reason)
    return {}


@routes.post("/knock/{roomIdOrAlias}")
async def knockRoom(req: ApiRequest) -> Any:
    _, reason = await _reason(req)
    room_id, via = await _resolve_room(req)
    await req.services.membership.knock(req.user.user_id, room_id, reason, via=via)
    return {"room_id": room_id}


@routes.get("/joined_rooms")
async def getJoinedRooms(req: ApiRequest) -> Any:
    return {"joined_rooms": await req.services.room_reads.joined_rooms(req.user)}


@routes.get("/rooms/{roomId}/members")
async def getMembersByRoom(req: ApiRequest) -> Any:
    chunk = await req.services.room_reads.members(
        req.user,
        _room_id(req),
        at=req.query.get("at"),
        membership=req.query.get("membership"),
        not_membership=req.query.get("not_membership"),
    )
    return {"chunk": chunk}


@routes.get("/rooms/{roomId}/joined_members")
async def getJoinedMembersByRoom(req: ApiRequest) -> Any:
    return {"joined": await req.services.room_reads.joined_members(req.user, _room_id(req))}


# -- sending ----------------------------------------------------------------------------------------


@routes.put("/rooms/{roomId}/send/{eventType}/{txnId}", ratelimit="message")
async def sendMessage(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    content = await req.json(allow_empty=False)
    event_id = await req.services.messages.send_message(
        req.user.user_id,
        req.user.device_id,
        room_id,
        req.path["eventType"],
        content,
        req.path["txnId"],
        ts=_massaged_ts(req),
    )
    return {"event_id": event_id}


def _massaged_ts(req: ApiRequest) -> int | None:
    """`?ts=` (timestamp massaging): honoured for appservice requests only, as in Synapse."""
    raw = req.query.get("ts")
    if raw is None or req.user.app_service_id is None or req.user.token_hash is not None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > 2**53 - 1:
        raise MatrixError(400, "M_INVALID_PARAM", "'ts' must be a non-negative integer timestamp")
    return int(raw)


async def _put_state(req: ApiRequest, state_key: str) -> Any:
    room_id = _room_id(req)
    content = await req.json(allow_empty=False)
    event_type = req.path["eventType"]
    if event_type == c.MEMBER:
        return await _member_via_state(req, room_id, state_key, content)
    event_id = await req.services.messages.send_state(
        req.user.user_id, room_id, event_type, state_key, content, ts=_massaged_ts(req)
    )
    return {"event_id": event_id}


async def _member_via_state(req: ApiRequest, room_id: str, target: str, content: dict[str, Any]) -> Any:
    """PUT /state/m.room.member/{userId}: route to the membership operation it expresses."""
    membership = content.get("membership")
    user = req.user.user_id
    reason = content.get("reason") if isinstance(content.get("reason"), str) else None
    service = req.services.membership
    persisted: PersistedEvent | None
    if membership == c.JOIN and target == user:
        persisted = await service.join(user, room_id, reason, content=content)
    elif membership == c.LEAVE and target == user:
        persisted = await service.leave(user, room_id, reason)
    elif membership == c.LEAVE:
        persisted = await service.kick(user, room_id, target, reason)
    elif membership == c.INVITE:
        persisted = await service.invite(user, room_id, target, reason=reason)
    elif membership == c.BAN:
        persisted = await service.ban(user, room_id, target, reason)
    elif membership == c.KNOCK and target == user:
        persisted = await service.knock(user, room_id, reason)
    else:
        raise forbidden("Invalid membership change")
    if persisted is None:  # a shadow-banned sender's invite: answered as if sent
        return {"event_id": fake_event_id()}
    return {"event_id": persisted.event.event_id}


@routes.put("/rooms/{roomId}/state/{eventType}/{stateKey}")
async def setRoomStateWithKey(req: ApiRequest) -> Any:
    return await _put_state(req, req.path["stateKey"])


@routes.put("/rooms/{roomId}/state/{eventType}")
async def setRoomStateNoKey(req: ApiRequest) -> Any:
    return await _put_state(req, "")


@routes.put("/rooms/{roomId}/state/{eventType}/")
async def setRoomStateEmptyKey(req: ApiRequest) -> Any:
    return await _put_state(req, "")


async def _get_state(req: ApiRequest, state_key: str) -> Any:
    room_id = _room_id(req)
    as_event = req.query.get("format") == "event"
    return await req.services.room_reads.state_event(
        req.user, room_id, req.path["eventType"], state_key, as_event=as_event
    )


@routes.get("/rooms/{roomId}/state/{eventType}/{stateKey}")
async def getRoomStateWithKey(req: ApiRequest) -> Any:
    return await _get_state(req, req.path["stateKey"])


@routes.get("/rooms/{roomId}/state/{eventType}")
async def getRoomStateNoKey(req: ApiRequest) -> Any:
    return await _get_state(req, "")


@routes.get("/rooms/{roomId}/state/{eventType}/")
async def getRoomStateEmptyKey(req: ApiRequest) -> Any:
    return await _get_state(req, "")


@routes.get("/rooms/{roomId}/state")
async def getRoomState(req: ApiRequest) -> Any:
    return await req.services.room_reads.state(req.user, _room_id(req))


@routes.put("/rooms/{roomId}/redact/{eventId}/{txnId}", ratelimit="message")
async def redactEvent(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    body = await req.json()
    reason = get_str(body, "reason")
    content: dict[str, Any] = {"reason": reason} if reason is not None else {}
    event_id = await req.services.messages.redact(
        req.user.user_id, req.user.device_id, room_id, req.path["eventId"], content, req.path["txnId"]
    )
    return {"event_id": event_id}
