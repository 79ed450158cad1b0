"""The admin API's account operations (Synapse's "User Admin API" shapes, docs/admin.md).

Every change an admin makes is recorded in the audit log with the admin as actor, inside the
transaction of the change where the change is ours to run.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, not_found
from homeserver.http.requester import Requester
from homeserver.services.accounts import NOT_AUDITED, AccountService, AuditAs
from homeserver.services.audit import AuditLog
from homeserver.services.auth import AuthService
from homeserver.services.client_ips import ClientIpTracker
from homeserver.services.profiles import ProfileService
from homeserver.services.restrictions import UserRestrictions
from homeserver.services.tokens import new_access_token, token_hash
from homeserver.storage.database import Database
from homeserver.storage.stores.account_data import AccountDataStore
from homeserver.storage.stores.admin_users import MEDIA_ORDER as MEDIA_ORDER
from homeserver.storage.stores.admin_users import USER_ORDER as USER_ORDER
from homeserver.storage.stores.admin_users import (
    AdminDevice,
    AdminUserRow,
    AdminUserStore,
    RatelimitOverride,
    UserListQuery,
    UserMedia,
    list_admin_devices,
)
from homeserver.storage.stores.devices import DeviceStore
from homeserver.storage.stores.rooms import RoomStore

__all__ = ["MEDIA_ORDER", "USER_ORDER", "AdminUserService", "RatelimitOverride", "UserListQuery"]

MAX_DEVICE_ID = 255
_MEDIUMS = ("email", "msisdn")


def user_list_json(row: AdminUserRow) -> dict[str, Any]:
    """An entry of `GET /v2/users` (creation_ts in ms, as Synapse's list)."""
    return {
        "name": row.user_id,
        "user_type": row.user_type,
        "is_guest": row.is_guest,
        "admin": row.is_admin,
        "deactivated": row.deactivated,
        "shadow_banned": row.shadow_banned,
        "displayname": row.displayname,
        "avatar_url": row.avatar_url,
        "creation_ts": row.created_ts,
        "approved": True,
        "erased": row.erased,
        "last_seen_ts": row.last_seen_ts,
        "locked": row.locked,
    }


def media_json(m: UserMedia) -> dict[str, Any]:
    return {
        "media_id": m.media_id,
        "media_type": m.media_type,
        "media_length": m.media_length,
        "upload_name": m.upload_name,
        "created_ts": m.created_ts,
        "last_access_ts": m.last_access_ts,
        "quarantined_by": m.quarantined_by,
        "safe_from_quarantine": m.safe_from_quarantine,
    }


def device_json(d: AdminDevice) -> dict[str, Any]:
    body: dict[str, Any] = {
        "device_id": d.device_id,
        "user_id": d.user_id,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_user_agent": d.last_seen_user_agent,
        "last_seen_ts": d.last_seen_ts,
        "dehydrated": False,
    }
    if d.display_name is not None:
        body["display_name"] = d.display_name
    return body


def _bad(message: str, errcode: str = "M_INVALID_PARAM") -> MatrixError:
    return MatrixError(400, errcode, message)


class AdminUserService:
    def __init__(
        self,
        db: Database,
        store: AdminUserStore,
        devices: DeviceStore,
        accounts: AccountService,
        auth: AuthService,
        profiles: ProfileService,
        restrictions: UserRestrictions,
        audit: AuditLog,
        clock: Clock,
        rooms: RoomStore,
        account_data: AccountDataStore,
        client_ips: ClientIpTracker,
        delete_media: Callable[[str, str], Awaitable[bool]],
        *,
        server_name: str,
    ) -> None:
        # (origin, media_id) -> deleted: the media repository's deletion (file, thumbnails, row)
        self.delete_media_item = delete_media
        self.client_ips = client_ips
        self.rooms = rooms
        self.account_data = account_data
        self.db = db
        self.store = store
        self.devices = devices
        self.accounts = accounts
        self.auth = auth
        self.profiles = profiles
        self.restrictions = restrictions
        self.audit = audit
        self.clock = clock
        self.server_name = server_name
        # (user_id, email addresses) after an admin replaced a user's threepids (email pushers)
        self.emails_changed_hooks: list[Callable[[str, list[str]], Awaitable[None]]] = []

    # -- lookups -------------------------------------------------------------------------------

    def local_user_id(self, user_id: str, message: str = "Can only look up local users") -> str:
        if not ids.is_valid_user_id(user_id):
            raise _bad(f"Invalid user id {user_id!r}")
        if ids.server_of(user_id) != self.server_name:
            raise MatrixError(400, "M_UNKNOWN", message)
        return user_id

    async def existing(self, user_id: str) -> AdminUserRow:
        self.local_user_id(user_id)
        row = await self.store.get_user(user_id)
        if row is None:
            raise not_found("User not found")
        return row

    async def user_info(self, user_id: str) -> dict[str, Any]:
        """`GET /v2/users/{userId}`: creation_ts in seconds, as Synapse."""
        row = await self.existing(user_id)
        return await self._info(row)

    async def _info(self, row: AdminUserRow) -> dict[str, Any]:
        threepids = await self.store.list_threepids(row.user_id)
        external = await self.store.list_external_ids(row.user_id)
        return {
            "name": row.user_id,
            "displayname": row.displayname,
            "threepids": [
                {
                    "medium": t.medium,
                    "address": t.address,
                    "added_at": t.added_at,
                    "validated_at": t.validated_at,
                }
                for t in threepids
            ],
            "avatar_url": row.avatar_url,
            "is_guest": row.is_guest,
            "admin": row.is_admin,
            "deactivated": row.deactivated,
            "erased": row.erased,
            "shadow_banned": row.shadow_banned,
            "creation_ts": row.created_ts // 1000,
            "approved": True,
            "appservice_id": row.appservice_id,
            "consent_server_notice_sent": None,
            "consent_version": None,
            "consent_ts": None,
            "user_type": row.user_type,
            "locked": row.locked,
            "suspended": row.suspended,
            "last_seen_ts": row.last_seen_ts,
            "external_ids": [{"auth_provider": p, "external_id": e} for p, e in external],
        }

    async def list_users(
        self, query: UserListQuery, *, offset: int, limit: int, order_by: str, descending: bool
    ) -> dict[str, Any]:
        rows, total = await self.store.list_users(
            query, offset=offset, limit=limit, order_by=order_by, descending=descending
        )
        body: dict[str, Any] = {"users": [user_list_json(r) for r in rows], "total": total}
        if offset + len(rows) < total and rows:
            body["next_token"] = str(offset + len(rows))
        return body

    # -- create or modify ----------------------------------------------------------------------

    async def upsert_user(
        self, admin: Requester, user_id: str, body: dict[str, Any]
    ) -> tuple[bool, dict[str, Any]]:
        """`PUT /v2/users/{userId}`: (created, user info)."""
        self.local_user_id(user_id, "This endpoint can only be used with local users")
        changes = _parse_upsert(body)
        existing = await self.store.get_user(user_id)
        if existing is None:
            await self._create(admin, user_id, changes)
            created = True
        else:
            await self._modify(admin, existing, changes)
            created = False
        if "threepids" in changes:
            emails = [address for medium, address in changes["threepids"] if medium == "email"]
            for hook in self.emails_changed_hooks:
                await hook(user_id, emails)
        row = await self.store.get_user(user_id)
        assert row is not None
        return created, await self._info(row)

    async def _create(self, admin: Requester, user_id: str, changes: dict[str, Any]) -> None:
        localpart = user_id[1:].split(":", 1)[0]
        try:
            self.accounts.check_new_localpart(localpart)
        except MatrixError as exc:
            raise _bad(exc.error, exc.errcode) from exc
        now = self.clock.time_ms()

        async def extras(conn: Any) -> None:
            await self._apply_txn(conn, user_id, changes, now)

        displayname = changes.get("displayname") or None
        await self.accounts.register(
            localpart,
            changes.get("password"),
            admin=bool(changes.get("admin", False)),
            displayname=displayname,
            inhibit_login=True,
            user_type=changes.get("user_type"),
            in_transaction=extras,
            audit_as=AuditAs("admin.user.create", admin.user_id, {"fields": sorted(changes)}),
        )
        if changes.get("deactivated"):
            await self.accounts.deactivate(user_id, audit_as=NOT_AUDITED)

    async def _apply_txn(self, conn: Any, user_id: str, changes: dict[str, Any], now: int) -> None:
        """The fields both creation and modification set directly in the database."""
        if "threepids" in changes:
            for medium, address in changes["threepids"]:
                owner = await self.store.threepid_owner_txn(conn, medium, address)
                if owner is not None and owner != user_id:
                    raise _bad("Threepid already in use", "M_THREEPID_IN_USE")
            await self.store.replace_threepids_txn(conn, user_id, changes["threepids"], now)
        if "external_ids" in changes:
            for provider, external_id in changes["external_ids"]:
                owner = await self.store.external_id_owner_txn(conn, provider, external_id)
                if owner is not None and owner != user_id:
                    raise _bad("External id is already in use", "M_INVALID_PARAM")
            await self.store.replace_external_ids_txn(conn, user_id, changes["external_ids"])
        if "locked" in changes:
            await self.store.set_flag_txn(conn, user_id, "locked", changes["locked"])
        if "user_type" in changes:
            await self.store.set_user_type_txn(conn, user_id, changes["user_type"])
        if "avatar_url" in changes:
            await self.store.set_profile_field_txn(conn, user_id, "avatar_url", changes["avatar_url"] or None)

    async def _modify(self, admin: Requester, row: AdminUserRow, changes: dict[str, Any]) -> None:
        user_id = row.user_id
        if changes.get("admin") is False and user_id == admin.user_id:
            raise _bad("You may not demote yourself.", "M_UNKNOWN")
        reactivate = changes.get("deactivated") is False and row.deactivated
        if reactivate and not changes.get("password"):
            raise _bad("Must provide a password to re-activate an account.", "M_UNKNOWN")
        now = self.clock.time_ms()
        profile_changed = "displayname" in changes and changes["displayname"] != (row.displayname or "")
        async with self.db.transaction() as conn:
            await self._apply_txn(conn, user_id, changes, now)
            if "admin" in changes:
                await self.store.set_flag_txn(conn, user_id, "is_admin", changes["admin"])
            if reactivate:
                await self.store.set_flag_txn(conn, user_id, "deactivated", False)
                await self.store.set_flag_txn(conn, user_id, "erased", False)
            if profile_changed:
                await self.store.set_profile_field_txn(
                    conn, user_id, "displayname", changes["displayname"] or None
                )
            await self.audit.record_txn(
                conn,
                "admin.user.modify",
                actor=admin.user_id,
                target=user_id,
                detail={"fields": sorted(changes)},
            )
        if "password" in changes:
            # Hashing is slow: done outside the transaction above; not audited twice.
            await self.accounts.change_password(
                user_id,
                changes["password"],
                keep_device_id=None,
                logout_devices=bool(changes.get("logout_devices", True)),
                audit_as=NOT_AUDITED,
            )
        if changes.get("deactivated") is True and not row.deactivated:
            await self.accounts.deactivate(user_id, audit_as=NOT_AUDITED)
            self.restrictions.invalidate(user_id)
        self.auth.invalidate_user(user_id)
        if profile_changed or "avatar_url" in changes:
            await self.profiles.notify_changed(user_id)

    # -- deactivation and passwords ------------------------------------------------------------

    async def deactivate(self, admin: Requester, user_id: str, *, erase: bool) -> None:
        await self.existing(user_id)
        await self.accounts.deactivate(
            user_id, erase=erase, audit_as=AuditAs("admin.user.deactivate", admin.user_id)
        )
        self.restrictions.invalidate(user_id)

    async def reset_password(
        self, admin: Requester, user_id: str, new_password: str, *, logout_devices: bool
    ) -> None:
        row = await self.existing(user_id)
        if row.deactivated:
            raise _bad("Cannot set a password for a deactivated user", "M_UNKNOWN")
        await self.accounts.change_password(
            user_id,
            new_password,
            keep_device_id=None,
            logout_devices=logout_devices,
            audit_as=AuditAs("admin.user.reset_password", admin.user_id),
        )

    # -- sessions ------------------------------------------------------------------------------

    async def whois(self, user_id: str) -> dict[str, Any]:
        """Synapse's shape exactly: every (address, user agent) the user was seen with, newest
        first, as the connections of one session of a device named "" (tools parse this)."""
        self.local_user_id(user_id, "Can only whois a local user")
        connections = [
            {"ip": seen.ip, "last_seen": seen.last_seen, "user_agent": seen.user_agent}
            for seen in await self.client_ips.list_seen(user_id)
        ]
        return {"user_id": user_id, "devices": {"": {"sessions": [{"connections": connections}]}}}

    async def login_as(self, admin: Requester, user_id: str, valid_until_ms: int | None) -> str:
        if user_id == admin.user_id:
            raise _bad("Cannot use admin API to login as self", "M_UNKNOWN")
        row = await self.existing(user_id)
        if row.deactivated:
            raise _bad("Cannot log in as a deactivated user", "M_UNKNOWN")
        now = self.clock.time_ms()
        if valid_until_ms is not None and valid_until_ms <= now:
            raise _bad("'valid_until_ms' is in the past")
        token = new_access_token()
        async with self.db.transaction() as conn:
            await self.store.insert_puppet_token_txn(
                conn, token_hash(token), user_id, admin.user_id, now, valid_until_ms
            )
            await self.audit.record_txn(
                conn,
                "admin.user.login_as",
                actor=admin.user_id,
                target=user_id,
                detail={"valid_until_ms": valid_until_ms},
            )
        return token

    # -- devices -------------------------------------------------------------------------------

    async def list_devices(self, user_id: str) -> list[AdminDevice]:
        await self.existing(user_id)
        await self.client_ips.flush()  # last-seen columns current for the admin
        return await list_admin_devices(self.db, user_id)

    async def get_device(self, user_id: str, device_id: str) -> AdminDevice:
        await self.existing(user_id)
        await self.client_ips.flush()
        found = await list_admin_devices(self.db, user_id, device_id)
        if not found:
            raise not_found("Device not found")
        return found[0]

    async def create_device(self, admin: Requester, user_id: str, device_id: str) -> None:
        await self.existing(user_id)
        if not device_id or len(device_id) > MAX_DEVICE_ID:
            raise _bad("Invalid device_id")
        now = self.clock.time_ms()
        async with self.db.transaction() as conn:
            created = await self.devices.upsert_device_txn(conn, user_id, device_id, None, now)
            if created:
                await self.audit.record_txn(
                    conn,
                    "admin.device.create",
                    actor=admin.user_id,
                    target=user_id,
                    detail={"device_id": device_id},
                )
        if created:
            await self.accounts.run_device_created_hooks(user_id, [device_id])

    async def update_device(
        self, admin: Requester, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        await self.existing(user_id)
        if display_name is not None and len(display_name) > 100:
            raise _bad("Device display name is too long (max 100)", "M_TOO_LARGE")
        if await self.devices.get_device(user_id, device_id) is None:
            raise not_found("Device not found")
        if display_name is not None:
            await self.devices.set_display_name(user_id, device_id, display_name)
        await self.audit.record(
            "admin.device.update",
            actor=admin.user_id,
            target=user_id,
            detail={"device_id": device_id, "display_name": display_name},
        )

    async def delete_devices(self, admin: Requester, user_id: str, device_ids: list[str]) -> None:
        await self.existing(user_id)
        await self.accounts.delete_devices(
            user_id, device_ids, audit_as=AuditAs("admin.device.delete", admin.user_id)
        )

    # -- restrictions --------------------------------------------------------------------------

    async def set_shadow_banned(self, admin: Requester, user_id: str, banned: bool) -> None:
        self.local_user_id(user_id, "Only local users can be shadow-banned")
        await self._set_flag(
            admin,
            user_id,
            "shadow_banned",
            banned,
            "admin.user.shadow_ban" if banned else "admin.user.unshadow_ban",
        )

    async def set_suspended(self, admin: Requester, user_id: str, suspended: bool) -> None:
        self.local_user_id(user_id, "Only local users can be suspended")
        await self._set_flag(
            admin,
            user_id,
            "suspended",
            suspended,
            "admin.user.suspend" if suspended else "admin.user.unsuspend",
        )

    async def _set_flag(self, admin: Requester, user_id: str, flag: str, value: bool, action: str) -> None:
        async with self.db.transaction() as conn:
            if not await self.store.set_flag_txn(conn, user_id, flag, value):
                raise not_found("User not found")
            await self.audit.record_txn(conn, action, actor=admin.user_id, target=user_id)
        self.restrictions.invalidate(user_id)

    async def set_ratelimit(self, admin: Requester, user_id: str, override: RatelimitOverride | None) -> None:
        self.local_user_id(user_id, "Only local users can be ratelimited")
        await self.existing(user_id)
        action = "admin.user.ratelimit.set" if override is not None else "admin.user.ratelimit.delete"
        detail = (
            {"messages_per_second": override.messages_per_second, "burst_count": override.burst_count}
            if override is not None
            else {}
        )
        async with self.db.transaction() as conn:
            await self.store.set_ratelimit_override_txn(conn, user_id, override)
            await self.audit.record_txn(conn, action, actor=admin.user_id, target=user_id, detail=detail)
        self.restrictions.set_override(user_id, override)

    async def record_set_admin(self, admin: Requester, user_id: str, is_admin: bool) -> None:
        """The audit record of `PUT /v1/users/{userId}/admin` (rules in ServerAdminService)."""
        await self.audit.record(
            "admin.user.set_admin", actor=admin.user_id, target=user_id, detail={"admin": is_admin}
        )

    # -- rooms and account data ----------------------------------------------------------------

    async def joined_rooms(self, user_id: str) -> list[str]:
        if not ids.is_valid_user_id(user_id):
            raise _bad(f"Invalid user id {user_id!r}")
        memberships = await self.rooms.list_user_memberships(user_id)
        return sorted(m.room_id for m in memberships if m.membership == "join")

    async def account_data_of(self, user_id: str) -> dict[str, Any]:
        await self.existing(user_id)
        global_data: dict[str, Any] = {}
        rooms: dict[str, dict[str, Any]] = {}
        for item in await self.account_data.list_since(user_id, 0, 2**62):
            if item.room_id == "":
                global_data[item.type] = item.content
            else:
                rooms.setdefault(item.room_id, {})[item.type] = item.content
        return {"global": global_data, "rooms": rooms}

    # -- media ---------------------------------------------------------------------------------

    async def list_media(
        self, user_id: str, *, offset: int, limit: int, order_by: str, descending: bool
    ) -> tuple[list[UserMedia], int]:
        self.local_user_id(user_id, "Can only look up local users")
        await self.existing(user_id)
        return await self.store.list_user_media(
            user_id, self.server_name, offset=offset, limit=limit, order_by=order_by, descending=descending
        )

    async def delete_media(
        self, admin: Requester, user_id: str, *, offset: int, limit: int, order_by: str, descending: bool
    ) -> list[str]:
        """Delete one page (as listed) of the user's media; returns the deleted ids."""
        media, _ = await self.list_media(
            user_id, offset=offset, limit=limit, order_by=order_by, descending=descending
        )
        deleted = [m.media_id for m in media if await self.delete_media_item(self.server_name, m.media_id)]
        await self.audit.record(
            "admin.user.media.delete", actor=admin.user_id, target=user_id, detail={"media_ids": deleted}
        )
        return deleted


_LOCALPART_CHARS = re.compile(r"^[a-z0-9._=\-/+]+$")


def _parse_upsert(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the body of `PUT /v2/users/{userId}` into the fields to change."""
    changes: dict[str, Any] = {}
    for key in ("password", "displayname", "avatar_url"):
        if key in body and body[key] is not None:
            if not isinstance(body[key], str):
                raise _bad(f"'{key}' must be a string")
            changes[key] = body[key]
    if "password" in changes and len(changes["password"]) > 512:
        raise _bad("Password too long")
    if "displayname" in changes and len(changes["displayname"]) > 256:
        raise _bad("Display name is too long (max 256)")
    avatar = changes.get("avatar_url")
    if avatar and not avatar.startswith("mxc://"):
        raise _bad("avatar_url must be an mxc:// URI")
    for key in ("admin", "deactivated", "locked", "logout_devices"):
        if key in body and body[key] is not None:
            if not isinstance(body[key], bool):
                raise _bad(f"Param '{key}' must be a boolean, if given", "M_BAD_JSON")
            changes[key] = body[key]
    if "user_type" in body:
        user_type = body["user_type"]
        if user_type is not None and user_type not in ("bot", "support"):
            raise _bad("Invalid user type")
        changes["user_type"] = user_type
    if "threepids" in body and body["threepids"] is not None:
        threepids = body["threepids"]
        if not isinstance(threepids, list):
            raise _bad("'threepids' must be a list")
        parsed: list[tuple[str, str]] = []
        for item in threepids:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("medium"), str)
                or not isinstance(item.get("address"), str)
            ):
                raise _bad("Each threepid needs a string 'medium' and 'address'", "M_MISSING_PARAM")
            medium, address = item["medium"], item["address"]
            if medium not in _MEDIUMS:
                raise _bad(f"Unsupported threepid medium {medium!r}")
            if medium == "email":
                address = address.lower()
                if "@" not in address:
                    raise _bad(f"Invalid email address {address!r}")
            parsed.append((medium, address))
        changes["threepids"] = parsed
    if "external_ids" in body and body["external_ids"] is not None:
        external = body["external_ids"]
        if not isinstance(external, list):
            raise _bad("'external_ids' must be a list")
        pairs: list[tuple[str, str]] = []
        for item in external:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("auth_provider"), str)
                or not isinstance(item.get("external_id"), str)
            ):
                raise _bad("Each external id needs 'auth_provider' and 'external_id'", "M_MISSING_PARAM")
            pairs.append((item["auth_provider"], item["external_id"]))
        changes["external_ids"] = pairs
    return changes
