"""Accounts: registration, login, tokens, passwords, deactivation.

Creating an account writes user, profile, device and access token in ONE transaction, so a crash
in between leaves nothing behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.appservice.registry import ApplicationService
from homeserver.auth_providers import PasswordProviderUnavailable
from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.http.ratelimit import Bucket, RateLimiter
from homeserver.services import metrics
from homeserver.services.audit import AuditLog
from homeserver.services.auth import AuthService
from homeserver.services.passwords import PasswordHasher
from homeserver.services.tokens import new_access_token, new_refresh_token, token_hash
from homeserver.storage.database import Database
from homeserver.storage.stores.devices import DeviceStore
from homeserver.storage.stores.users import User, UserStore

logger = logging.getLogger(__name__)

MAX_PASSWORD_LENGTH = 512
_NUMERIC = re.compile(r"^\d+$")

DeviceHook = Callable[[str, list[str]], Awaitable[None]]
UserHook = Callable[[str], Awaitable[None]]
# (localpart or email address, password) -> the user id it signs in as, or None; raises
# PasswordProviderUnavailable when the external system cannot be asked.
ExternalPasswordCheck = Callable[[str, str], Awaitable[str | None]]

_DIRECTORY_DOWN = "The organisation's directory cannot be reached; try again in a moment"


@dataclass(frozen=True, slots=True)
class AuditAs:
    """How an account operation is recorded in the audit log when someone other than the user
    (an admin) does it: the action name and the actor. Without it the user is the actor and the
    operation's own action name is used."""

    action: str
    actor: str | None
    detail: dict[str, Any] | None = None


# For a step of a larger operation that records its own single audit record.
NOT_AUDITED = AuditAs("", None)


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None
    expires_in_ms: int | None


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Lifetimes in ms; `access_lifetime` None means access tokens never expire."""

    access_lifetime: int | None
    refresh_lifetime: int | None
    session_lifetime: int | None


class AccountService:
    def __init__(
        self,
        db: Database,
        users: UserStore,
        devices: DeviceStore,
        auth: AuthService,
        hasher: PasswordHasher,
        clock: Clock,
        ratelimiter: RateLimiter,
        *,
        server_name: str,
        tokens: TokenSettings,
        rc_login_account: Bucket,
        rc_login_failed: Bucket,
        audit: AuditLog | None = None,
    ) -> None:
        self.db = db
        self.users = users
        self.devices = devices
        self.auth = auth
        self.hasher = hasher
        self.clock = clock
        self.ratelimiter = ratelimiter
        self.server_name = server_name
        self.tokens = tokens
        self.rc_login_account = rc_login_account
        self.rc_login_failed = rc_login_failed
        self.audit = audit
        # Other services hook in here (device keys, rooms) without this module importing them.
        self.devices_deleted_hooks: list[DeviceHook] = []
        self.device_created_hooks: list[DeviceHook] = []
        self.deactivated_hooks: list[UserHook] = []
        # GDPR erasure (services/erasure.py), run after deactivation when `erase` is asked for.
        # Called with (user_id, actor): the admin who asked, or None when the user erased themself.
        self.erase_hooks: list[Callable[[str, str | None], Awaitable[None]]] = []
        self.registered_hooks: list[UserHook] = []
        # Raises 400 M_EXCLUSIVE for a user id an appservice reserves (ordinary registrations).
        self.reserved_user_check: Callable[[str], None] | None = None
        self.profile_changed_hooks: list[UserHook] = []
        # Password providers (auth_providers/, wired by the container): asked before the local
        # password, as Synapse asks its modules first.
        self.external_password_check: ExternalPasswordCheck | None = None
        self.external_email_check: ExternalPasswordCheck | None = None
        # (medium, address) -> the local user a validated threepid belongs to
        self.threepid_owner: Callable[[str, str], Awaitable[str | None]] | None = None

    async def _audit_txn(
        self,
        conn: Any,
        audit_as: AuditAs | None,
        action: str,
        user_id: str,
        target: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """One audit record inside the operation's transaction (see services/audit.py)."""
        if self.audit is None or audit_as is NOT_AUDITED:
            return
        if audit_as is not None:
            merged = {**(detail or {}), **(audit_as.detail or {})}
            await self.audit.record_txn(
                conn, audit_as.action, actor=audit_as.actor, target=user_id, detail=merged
            )
        else:
            await self.audit.record_txn(conn, action, actor=user_id, target=target, detail=detail)

    # -- user ids ------------------------------------------------------------------------------

    def user_id_for(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def check_new_localpart(self, localpart: str) -> str:
        if not isinstance(localpart, str) or not localpart:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID cannot be empty")
        if localpart != localpart.lower() or not ids.is_valid_localpart(localpart):
            raise MatrixError(
                400, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'"
            )
        if localpart.startswith("_"):
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID may not begin with '_'")
        if len(self.user_id_for(localpart).encode()) > ids.MAX_ID_LENGTH:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        return localpart

    async def is_available(self, localpart: str) -> bool:
        self.check_new_localpart(localpart)
        return not await self.users.get_user_case_insensitive(self.user_id_for(localpart))

    async def generate_localpart(self) -> str:
        # Synapse hands out numeric localparts when the client asks for none.
        for _ in range(10):
            candidate = str(self.clock.time_ms() % 10**9 + int(ids.random_string(4, "0123456789")))
            if await self.is_available(candidate):
                return candidate
        raise MatrixError(500, "M_UNKNOWN", "Could not generate a user id")

    # -- registration --------------------------------------------------------------------------

    async def register(
        self,
        localpart: str,
        password: str | None,
        *,
        admin: bool = False,
        displayname: str | None = None,
        device_id: str | None = None,
        initial_device_display_name: str | None = None,
        inhibit_login: bool = False,
        user_type: str | None = None,
        appservice_id: str | None = None,
        want_refresh_token: bool = False,
        in_transaction: Callable[[Any], Awaitable[None]] | None = None,
        validate_localpart: bool = True,
        audit_as: AuditAs | None = None,
    ) -> tuple[str, LoginResult | None]:
        # Appservices own their namespaces (bridges use `_prefix_` ids), so the ordinary-user
        # localpart rules do not apply to the users they register.
        if validate_localpart:
            self.check_new_localpart(localpart)
            if self.reserved_user_check is not None:
                self.reserved_user_check(self.user_id_for(localpart))
        if password is not None and len(password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "M_INVALID_PARAM", "Password too long")
        user_id = self.user_id_for(localpart)
        password_hash = await self.hasher.hash(password) if password else None
        now = self.clock.time_ms()
        result: LoginResult | None = None
        async with self.db.transaction() as conn:
            if await self.users.user_id_taken_txn(conn, user_id):
                raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
            inserted = await self.users.insert_user_txn(
                conn,
                user_id,
                password_hash,
                now,
                is_admin=admin,
                user_type=user_type,
                appservice_id=appservice_id,
            )
            if not inserted:  # registered concurrently since the check above
                raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
            await self.users.insert_profile_txn(conn, user_id, displayname or localpart)
            if in_transaction is not None:
                await in_transaction(conn)
            if not inhibit_login:
                result = await self._create_session_txn(
                    conn, user_id, device_id, initial_device_display_name, want_refresh_token, now
                )
            await self._audit_txn(
                conn,
                audit_as,
                "register",
                user_id,
                user_id,
                {"device_id": result.device_id} if result is not None else None,
            )
        metrics.registrations.labels("False", "False", "").inc()
        if result is not None:
            metrics.logins.labels("False", "").inc()
        for hook in self.registered_hooks:
            try:
                await hook(user_id)
            except Exception:
                logger.exception("registration hook failed for %s", user_id)
        if result is not None:
            await self._run_device_hooks(self.device_created_hooks, user_id, [result.device_id])
        return user_id, result

    # -- login and sessions --------------------------------------------------------------------

    async def _create_session_txn(
        self,
        conn: Any,
        user_id: str,
        device_id: str | None,
        display_name: str | None,
        want_refresh_token: bool,
        now: int,
    ) -> LoginResult:
        device_id = device_id or ids.new_device_id()
        await self.devices.upsert_device_txn(conn, user_id, device_id, display_name, now)
        access_token = new_access_token()
        refresh_token = None
        expires_in = None
        refresh_hash = None
        if want_refresh_token and self.tokens.access_lifetime is not None:
            refresh_token = new_refresh_token()
            refresh_hash = token_hash(refresh_token)
            expires_in = self.tokens.access_lifetime
            refresh_expiry = now + self.tokens.refresh_lifetime if self.tokens.refresh_lifetime else None
            ultimate = now + self.tokens.session_lifetime if self.tokens.session_lifetime else None
            await self.devices.insert_refresh_token_txn(
                conn, refresh_hash, user_id, device_id, now, refresh_expiry, ultimate
            )
        valid_until = now + expires_in if expires_in is not None else None
        await self.devices.insert_access_token_txn(
            conn, token_hash(access_token), user_id, device_id, now, valid_until, refresh_hash
        )
        return LoginResult(user_id, device_id, access_token, refresh_token, expires_in)

    async def create_session(
        self,
        user_id: str,
        device_id: str | None,
        display_name: str | None,
        want_refresh_token: bool,
        *,
        login_type: str | None = None,
    ) -> LoginResult:
        """A new device and token; with `login_type` the login is recorded in the audit log."""
        now = self.clock.time_ms()
        async with self.db.transaction() as conn:
            result = await self._create_session_txn(
                conn, user_id, device_id, display_name, want_refresh_token, now
            )
            if login_type is not None:
                await self._audit_txn(conn, None, "login", user_id, result.device_id, {"type": login_type})
        metrics.logins.labels("False", "").inc()
        await self._run_device_hooks(self.device_created_hooks, user_id, [result.device_id])
        return result

    def resolve_user_identifier(self, body: dict[str, Any]) -> str:
        """The user id a login body names (identifier m.id.user, or the deprecated `user`)."""
        identifier = body.get("identifier")
        user: Any = None
        if identifier is not None:
            if not isinstance(identifier, dict):
                raise MatrixError(400, "M_BAD_JSON", "'identifier' must be an object")
            if identifier.get("type") != "m.id.user":
                raise MatrixError(400, "M_UNKNOWN", "Unknown login identifier type")
            user = identifier.get("user")
        else:
            user = body.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing user identifier")
        if user.startswith("@"):
            return user.lower() if ids.server_of(user) == self.server_name else user
        return self.user_id_for(user.lower())

    @staticmethod
    def _email_identifier(body: dict[str, Any]) -> str | None:
        """The address of an `m.id.thirdparty` email identifier (lower-cased), else None."""
        identifier = body.get("identifier")
        if not isinstance(identifier, dict) or identifier.get("type") != "m.id.thirdparty":
            return None
        medium, address = identifier.get("medium"), identifier.get("address")
        if not isinstance(medium, str) or not isinstance(address, str) or not address:
            raise MatrixError(400, "M_MISSING_PARAM", "'medium' and 'address' are required")
        if medium != "email":
            raise MatrixError(400, "M_UNKNOWN", f"Login with a {medium} address is not supported")
        return address.strip().lower()

    async def check_password(self, user_id: str, password: Any) -> User:
        """Raise 403 unless the password is right; rate-limits failures per account.

        A password provider (LDAP) is asked first for our own users; then the local password.
        When the provider cannot be asked, local accounts still sign in and everyone else gets
        503 rather than a misleading "wrong password"."""
        if not isinstance(password, str):
            raise MatrixError(400, "M_BAD_JSON", "'password' must be a string")
        self.ratelimiter.check("login_failed", user_id, self.rc_login_failed, update=False)
        provider_down = False
        ours = ids.server_of(user_id) == self.server_name
        if password and self.external_password_check is not None and ours:
            try:
                external = await self.external_password_check(ids.localpart_of(user_id), password)
            except PasswordProviderUnavailable as exc:
                logger.warning("password provider unavailable for %s: %s", user_id, exc)
                external, provider_down = None, True
            if external is not None:
                user = await self.users.get_user(external)
                if user is not None:
                    return await self._usable(user)
        user = await self.users.get_user(user_id)
        if user is None or not password or not await self.hasher.check(password, user.password_hash):
            if provider_down:
                raise MatrixError(503, "M_UNKNOWN", _DIRECTORY_DOWN)
            self.ratelimiter.check("login_failed", user_id, self.rc_login_failed)
            await self._record_failed_login(user_id, "invalid password")
            raise MatrixError(403, "M_FORBIDDEN", "Invalid username or password")
        return await self._usable(user)

    async def _check_password_by_email(self, address: str, password: Any) -> User:
        """`m.id.thirdparty` login: a local account with that validated address, else the
        password provider's user with that mail attribute."""
        if not isinstance(password, str):
            raise MatrixError(400, "M_BAD_JSON", "'password' must be a string")
        owner = await self.threepid_owner("email", address) if self.threepid_owner is not None else None
        if owner is not None:
            return await self.check_password(owner, password)
        self.ratelimiter.check("login_failed", address, self.rc_login_failed, update=False)
        if password and self.external_email_check is not None:
            try:
                external = await self.external_email_check(address, password)
            except PasswordProviderUnavailable as exc:
                logger.warning("password provider unavailable for %s: %s", address, exc)
                raise MatrixError(503, "M_UNKNOWN", _DIRECTORY_DOWN) from exc
            user = await self.users.get_user(external) if external is not None else None
            if user is not None:
                return await self._usable(user)
        self.ratelimiter.check("login_failed", address, self.rc_login_failed)
        raise MatrixError(403, "M_FORBIDDEN", "Invalid username or password")

    async def _usable(self, user: User) -> User:
        if user.deactivated:
            await self._record_failed_login(user.user_id, "deactivated")
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        if user.locked:
            await self._record_failed_login(user.user_id, "locked")
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=False)
        return user

    async def _record_failed_login(self, user_id: str, reason: str) -> None:
        if self.audit is not None:
            # The claimed user is both actor and target: nobody proved who they are.
            await self.audit.record("login.failed", actor=user_id, target=user_id, detail={"reason": reason})

    async def login_with_password(self, body: dict[str, Any]) -> LoginResult:
        address = self._email_identifier(body)
        if address is not None:
            self.ratelimiter.check("login_account", address, self.rc_login_account)
            user = await self._check_password_by_email(address, body.get("password"))
        else:
            user_id = self.resolve_user_identifier(body)
            self.ratelimiter.check("login_account", user_id, self.rc_login_account)
            user = await self.check_password(user_id, body.get("password"))
        device_id = body.get("device_id")
        display_name = body.get("initial_device_display_name")
        if device_id is not None and not isinstance(device_id, str):
            raise MatrixError(400, "M_BAD_JSON", "'device_id' must be a string")
        if display_name is not None and not isinstance(display_name, str):
            raise MatrixError(400, "M_BAD_JSON", "'initial_device_display_name' must be a string")
        want_refresh = body.get("refresh_token") is True
        return await self.create_session(
            user.user_id, device_id, display_name, want_refresh, login_type="m.login.password"
        )

    async def login_appservice_user(self, service: ApplicationService, body: dict[str, Any]) -> LoginResult:
        """`m.login.application_service`: a session for an existing user in the namespace."""
        user_id = self.resolve_user_identifier(body)
        if not service.is_interested_in_user(user_id):
            raise MatrixError(403, "M_FORBIDDEN", "Invalid access_token for this user")
        user = await self.users.get_user(user_id)
        if user is None:
            raise MatrixError(403, "M_FORBIDDEN", "Invalid username or password")
        if user.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        device_id = body.get("device_id")
        display_name = body.get("initial_device_display_name")
        if device_id is not None and not isinstance(device_id, str):
            raise MatrixError(400, "M_BAD_JSON", "'device_id' must be a string")
        if display_name is not None and not isinstance(display_name, str):
            raise MatrixError(400, "M_BAD_JSON", "'initial_device_display_name' must be a string")
        return await self.create_session(user_id, device_id, display_name, body.get("refresh_token") is True)

    async def refresh(self, refresh_token: str) -> LoginResult:
        now = self.clock.time_ms()
        digest = token_hash(refresh_token)
        async with self.db.transaction() as conn:
            row = await self.devices.get_refresh_token_txn(conn, digest)
            if row is None:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown refresh token", soft_logout=False)
            if row.expiry_ts is not None and row.expiry_ts <= now:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Refresh token expired", soft_logout=False)
            if row.next_token_hash is not None:
                # Reuse of a rotated token: allowed only while its successor is unused (the
                # client may have lost the response). Drop the successor and issue afresh.
                await self.devices.delete_refresh_token_txn(conn, row.next_token_hash)
            new_refresh = new_refresh_token()
            new_refresh_hash = token_hash(new_refresh)
            expires_in = self.tokens.access_lifetime
            ultimate = row.ultimate_session_expiry_ts
            if ultimate is not None and expires_in is not None:
                expires_in = min(expires_in, max(0, ultimate - now))
            refresh_expiry = now + self.tokens.refresh_lifetime if self.tokens.refresh_lifetime else None
            await self.devices.insert_refresh_token_txn(
                conn, new_refresh_hash, row.user_id, row.device_id, now, refresh_expiry, ultimate
            )
            await self.devices.set_next_refresh_token_txn(conn, digest, new_refresh_hash)
            access = new_access_token()
            await self.devices.insert_access_token_txn(
                conn,
                token_hash(access),
                row.user_id,
                row.device_id,
                now,
                now + expires_in if expires_in is not None else None,
                new_refresh_hash,
            )
        return LoginResult(row.user_id, row.device_id, access, new_refresh, expires_in)

    async def logout(self, user_id: str, device_id: str | None, token_digest: str | None) -> None:
        if device_id is None:
            # A token without a device (an admin's "login as" token): only the token goes.
            if token_digest is not None:
                async with self.db.transaction() as conn:
                    await self.devices.delete_access_token_txn(conn, token_digest)
                    await self._audit_txn(conn, None, "logout", user_id, None)
                self.auth.invalidate([token_digest])
            return
        await self._delete_devices(user_id, [device_id], "logout", None)

    async def logout_all(self, user_id: str) -> None:
        async with self.db.transaction() as conn:
            device_ids = await self.devices.list_device_ids_txn(conn, user_id)
            hashes = await self.devices.list_token_hashes_txn(conn, user_id)
            await self.devices.delete_devices_txn(conn, user_id, device_ids)
            await self.devices.delete_access_tokens_txn(conn, user_id)
            # As Synapse: an admin's /logout/all also ends the "login as" tokens they made.
            hashes += await self.devices.delete_puppet_tokens_txn(conn, user_id)
            await self._audit_txn(conn, None, "logout.all", user_id, user_id, {"devices": device_ids})
        self.auth.invalidate(hashes)
        await self._run_device_hooks(self.devices_deleted_hooks, user_id, device_ids)

    async def delete_devices(
        self, user_id: str, device_ids: list[str], *, audit_as: AuditAs | None = None
    ) -> None:
        await self._delete_devices(user_id, device_ids, "device.delete", audit_as)

    async def _delete_devices(
        self, user_id: str, device_ids: list[str], action: str, audit_as: AuditAs | None
    ) -> None:
        hashes: list[str] = []
        async with self.db.transaction() as conn:
            for device_id in device_ids:
                hashes += await self.devices.list_token_hashes_for_device_txn(conn, user_id, device_id)
            await self.devices.delete_devices_txn(conn, user_id, device_ids)
            target = device_ids[0] if action == "logout" and device_ids else user_id
            await self._audit_txn(conn, audit_as, action, user_id, target, {"devices": device_ids})
        self.auth.invalidate(hashes)
        await self._run_device_hooks(self.devices_deleted_hooks, user_id, device_ids)

    # -- passwords and deactivation ------------------------------------------------------------

    async def change_password(
        self,
        user_id: str,
        new_password: str,
        *,
        keep_device_id: str | None,
        logout_devices: bool,
        audit_as: AuditAs | None = None,
    ) -> None:
        if len(new_password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "M_INVALID_PARAM", "Password too long")
        new_hash = await self.hasher.hash(new_password)
        removed: list[str] = []
        hashes: list[str] = []
        async with self.db.transaction() as conn:
            await self.users.set_password_hash_txn(conn, user_id, new_hash)
            if logout_devices:
                removed = [
                    d for d in await self.devices.list_device_ids_txn(conn, user_id) if d != keep_device_id
                ]
                hashes = await self.devices.list_token_hashes_txn(conn, user_id, keep_device_id)
                await self.devices.delete_devices_txn(conn, user_id, removed)
                await self.devices.delete_access_tokens_txn(conn, user_id, keep_device_id)
            await self._audit_txn(
                conn, audit_as, "password.change", user_id, user_id, {"logout_devices": logout_devices}
            )
        self.auth.invalidate(hashes)
        if removed:
            await self._run_device_hooks(self.devices_deleted_hooks, user_id, removed)

    async def deactivate(
        self,
        user_id: str,
        *,
        erase: bool = False,
        audit_as: AuditAs | None = None,
        in_transaction: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        async with self.db.transaction() as conn:
            device_ids = await self.devices.list_device_ids_txn(conn, user_id)
            await self.devices.delete_devices_txn(conn, user_id, device_ids)
            await self.devices.delete_access_tokens_txn(conn, user_id)
            await self.users.set_password_hash_txn(conn, user_id, None)
            await self.users.set_deactivated_txn(conn, user_id, True)
            # As Synapse: third-party ids go, so nobody can reset the password through them.
            await self.users.delete_threepids_txn(conn, user_id)
            if erase:
                await self.users.clear_profile_txn(conn, user_id)
                await self.users.mark_erased_txn(conn, user_id)
            if in_transaction is not None:
                await in_transaction(conn)
            await self._audit_txn(conn, audit_as, "account.deactivate", user_id, user_id, {"erase": erase})
        self.auth.invalidate_user(user_id)
        await self._run_device_hooks(self.devices_deleted_hooks, user_id, device_ids)
        for hook in self.deactivated_hooks:
            await hook(user_id)
        if erase:
            actor = audit_as.actor if audit_as is not None and audit_as is not NOT_AUDITED else None
            for erase_hook in self.erase_hooks:
                await erase_hook(user_id, actor)

    async def run_device_created_hooks(self, user_id: str, device_ids: list[str]) -> None:
        await self._run_device_hooks(self.device_created_hooks, user_id, device_ids)

    async def _run_device_hooks(self, hooks: list[DeviceHook], user_id: str, device_ids: list[str]) -> None:
        for hook in hooks:
            try:
                await hook(user_id, device_ids)
            except Exception:
                logger.exception("device hook failed for %s", user_id)
