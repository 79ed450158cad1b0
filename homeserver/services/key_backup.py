"""Server-side key backups (spec "Server-side key backups", key_backup.yaml).

Versions are numbered per user and never reused. Keys can only be written to the current (latest
live) version. When a session already has a key, the spec's rules decide which one stays: the
verified one, then the lower `first_message_index`, then the lower `forwarded_count`. The `etag`
changes whenever the stored keys change.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError, not_found
from homeserver.storage.database import Database
from homeserver.storage.stores.key_backup import BackupVersion, KeyBackupStore, RoomKey


def parse_version(value: str | None) -> int | None:
    """A version string as we hand them out (a positive integer); None for anything else.

    ASCII digits only: str.isdigit() also accepts "¹" or "①", which int() then refuses (a 500).
    """
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    number = int(value)
    return number if number > 0 else None


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def parse_room_key(room_id: str, session_id: str, data: Any) -> RoomKey:
    if not isinstance(data, dict):
        raise _bad(f"Key data for session {session_id} must be an object")
    fmi = data.get("first_message_index")
    fwd = data.get("forwarded_count")
    verified = data.get("is_verified")
    session_data = data.get("session_data")
    for name, value in (("first_message_index", fmi), ("forwarded_count", fwd)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(f"'{name}' must be an integer")
    if not isinstance(verified, bool):
        raise _bad("'is_verified' must be a boolean")
    if not isinstance(session_data, dict):
        raise _bad("'session_data' must be an object")
    return RoomKey(room_id, session_id, fmi, fwd, verified, session_data)  # type: ignore[arg-type]


def parse_sessions(room_id: str, body: Any) -> list[RoomKey]:
    """`{"sessions": {session_id: key data}}` (PUT /room_keys/keys/{roomId})."""
    if not isinstance(body, dict) or not isinstance(body.get("sessions"), dict):
        raise _bad("'sessions' must be an object")
    return [parse_room_key(room_id, sid, data) for sid, data in body["sessions"].items()]


def parse_room_keys(body: Any) -> list[RoomKey]:
    """`{"rooms": {room_id: {"sessions": ...}}}` (PUT /room_keys/keys)."""
    rooms = body.get("rooms") if isinstance(body, dict) else None
    if not isinstance(rooms, dict):
        raise _bad("'rooms' must be an object")
    return [key for room_id, room in rooms.items() for key in parse_sessions(room_id, room)]


def is_better(new: RoomKey, old: RoomKey) -> bool:
    """Whether `new` replaces `old` under the spec's rules."""
    if new.is_verified != old.is_verified:
        return new.is_verified
    if new.first_message_index != old.first_message_index:
        return new.first_message_index < old.first_message_index
    return new.forwarded_count < old.forwarded_count


class KeyBackupService:
    def __init__(self, db: Database, store: KeyBackupStore) -> None:
        self.db = db
        self.store = store

    # -- versions --------------------------------------------------------------------------------

    @staticmethod
    def _check_version_body(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        algorithm = body.get("algorithm")
        auth_data = body.get("auth_data")
        if algorithm is None or auth_data is None:
            raise MatrixError(400, "M_MISSING_PARAM", "'algorithm' and 'auth_data' are required")
        if not isinstance(algorithm, str):
            raise _bad("'algorithm' must be a string")
        if not isinstance(auth_data, dict):
            raise _bad("'auth_data' must be an object")
        return algorithm, auth_data

    async def create_version(self, user_id: str, body: dict[str, Any]) -> str:
        algorithm, auth_data = self._check_version_body(body)
        return str(await self.store.insert_version(user_id, algorithm, auth_data))

    async def _live_version(self, user_id: str, version: str | None) -> BackupVersion:
        number = parse_version(version) if version is not None else None
        if version is not None and number is None:
            raise not_found("Unknown backup version")
        info = await self.store.get_version(user_id, number)
        if info is None or info.deleted:
            raise not_found("No backup found" if version is None else "Unknown backup version")
        return info

    async def get_version(self, user_id: str, version: str | None) -> dict[str, Any]:
        info = await self._live_version(user_id, version)
        return {
            "algorithm": info.algorithm,
            "auth_data": info.auth_data,
            "count": await self.store.count_keys(user_id, info.version),
            "etag": str(info.etag),
            "version": str(info.version),
        }

    async def update_version(self, user_id: str, version: str, body: dict[str, Any]) -> None:
        algorithm, auth_data = self._check_version_body(body)
        body_version = body.get("version")
        if body_version is not None and body_version != version:
            raise MatrixError(400, "M_INVALID_PARAM", "Version in body does not match")
        info = await self._live_version(user_id, version)
        if info.algorithm != algorithm:
            raise MatrixError(400, "M_INVALID_PARAM", "Algorithm does not match")
        await self.store.update_auth_data(user_id, info.version, auth_data)

    async def delete_version(self, user_id: str, version: str | None) -> None:
        """Deleting a version deleted before succeeds; one that never existed is 404."""
        if version is None:
            info = await self._live_version(user_id, None)
            number = info.version
        else:
            parsed = parse_version(version)
            if parsed is None or await self.store.get_version(user_id, parsed) is None:
                raise not_found("Unknown backup version")
            number = parsed
        await self.store.delete_version(user_id, number)

    # -- keys ------------------------------------------------------------------------------------

    async def _writable_version(self, user_id: str, version: str | None) -> int:
        if version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing string query parameter 'version'")
        info = await self._live_version(user_id, version)
        current = await self.store.get_version(user_id, None)
        if current is None or current.version != info.version:
            raise MatrixError(
                403,
                "M_WRONG_ROOM_KEYS_VERSION",
                "Wrong backup version.",
                current_version=str(current.version) if current is not None else None,
            )
        return info.version

    async def put_keys(self, user_id: str, version: str | None, keys: list[RoomKey]) -> dict[str, Any]:
        number = await self._writable_version(user_id, version)
        async with self.db.transaction() as conn:
            info = await self.store.get_version_txn(conn, user_id, number)
            if info is None or info.deleted:
                raise not_found("Unknown backup version")
            stored = await self.store.list_keys_txn(
                conn, user_id, number, [(k.room_id, k.session_id) for k in keys]
            )
            winners: dict[tuple[str, str], RoomKey] = {}
            for key in keys:
                ident = (key.room_id, key.session_id)
                old = winners.get(ident) or stored.get(ident)
                if old is None or is_better(key, old):
                    winners[ident] = key
            etag = info.etag
            if winners:
                await self.store.upsert_keys_txn(conn, user_id, number, list(winners.values()))
                etag = await self.store.bump_etag_txn(conn, user_id, number)
            count = await self.store.count_keys_txn(conn, user_id, number)
        return {"etag": str(etag), "count": count}

    async def get_keys(
        self, user_id: str, version: str | None, room_id: str | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        if version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing string query parameter 'version'")
        info = await self._live_version(user_id, version)
        keys = await self.store.list_keys(user_id, info.version, room_id, session_id)
        if session_id is not None:
            if not keys:
                raise not_found("No room_keys found")
            return keys[0].to_json()
        if room_id is not None:
            return {"sessions": {k.session_id: k.to_json() for k in keys}}
        rooms: dict[str, dict[str, Any]] = {}
        for k in keys:
            rooms.setdefault(k.room_id, {"sessions": {}})["sessions"][k.session_id] = k.to_json()
        return {"rooms": rooms}

    async def delete_keys(
        self, user_id: str, version: str | None, room_id: str | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        if version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing string query parameter 'version'")
        info = await self._live_version(user_id, version)
        async with self.db.transaction() as conn:
            await self.store.delete_keys_txn(conn, user_id, info.version, room_id, session_id)
            etag = await self.store.bump_etag_txn(conn, user_id, info.version)
            count = await self.store.count_keys_txn(conn, user_id, info.version)
        return {"etag": str(etag), "count": count}
