"""Signing in with the organisation's LDAP password: the account side.

`auth_providers/ldap.py` says whether a password is right; this module turns a directory entry
into a Matrix account. As matrix-synapse-ldap3: the account is created on first login, with the
directory's name attribute (`cn`, Korean names included) as display name and its mail
attribute(s) bound as validated email addresses; later logins leave the profile alone (the user
may have changed it; directory sync keeps it current where an organisation wants that). The
directory entry's DN is recorded as the user's external id (`ldap`) for admins.
"""

from __future__ import annotations

import logging

from homeserver.auth_providers.ldap import LdapAuthProvider, LdapIdentity
from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.services.accounts import AccountService
from homeserver.storage.database import Connection
from homeserver.storage.stores.admin_users import AdminUserStore

logger = logging.getLogger(__name__)

AUTH_PROVIDER_ID = "ldap"


class LdapLogin:
    def __init__(
        self, provider: LdapAuthProvider, accounts: AccountService, admin_users: AdminUserStore, clock: Clock
    ) -> None:
        self.provider = provider
        self.accounts = accounts
        self.admin_users = admin_users
        self.clock = clock

    def install(self) -> None:
        self.accounts.external_password_check = self.check_localpart
        self.accounts.external_email_check = self.check_email

    async def check_localpart(self, localpart: str, password: str) -> str | None:
        identity = await self.provider.authenticate(localpart, password)
        return await self._account_for(identity) if identity is not None else None

    async def check_email(self, address: str, password: str) -> str | None:
        identity = await self.provider.authenticate_by_email(address, password)
        return await self._account_for(identity) if identity is not None else None

    async def _account_for(self, identity: LdapIdentity) -> str | None:
        localpart = identity.username.strip().lower()
        if not ids.is_valid_localpart(localpart) or localpart.startswith("_"):
            # Not mapped silently to something else: two directory names could collide.
            logger.warning("LDAP user %r is no valid Matrix localpart; login refused", identity.username)
            return None
        user_id = self.accounts.user_id_for(localpart)
        if await self.accounts.users.get_user(user_id) is not None:
            return user_id

        async def bind_directory_ids(conn: Connection) -> None:
            now = self.clock.time_ms()
            emails = []
            for address in dict.fromkeys(e.strip().lower() for e in identity.emails if "@" in e):
                owner = await self.admin_users.threepid_owner_txn(conn, "email", address)
                if owner is None:
                    emails.append(("email", address))
            if emails:
                await self.admin_users.replace_threepids_txn(conn, user_id, emails, now)
            await self.admin_users.replace_external_ids_txn(conn, user_id, [(AUTH_PROVIDER_ID, identity.dn)])

        try:
            await self.accounts.register(
                localpart,
                None,
                displayname=identity.display_name or localpart,
                inhibit_login=True,
                in_transaction=bind_directory_ids,
            )
            logger.info("created %s on first LDAP login (%s)", user_id, identity.dn)
        except MatrixError as err:
            if err.errcode != "M_USER_IN_USE":  # a concurrent first login created it: fine
                raise
        return user_id
