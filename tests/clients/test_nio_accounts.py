"""matrix-nio registers, logs in, calls whoami, sets a display name and logs out."""

from __future__ import annotations

import secrets

import nio

from synapse_compat_tests.launcher import LaunchedServer


async def test_nio_account_lifecycle(server: LaunchedServer) -> None:
    localpart = f"nio{secrets.token_hex(4)}"
    client = nio.AsyncClient(server.base_url, localpart)
    try:
        registered = await client.register(localpart, "correct horse")
        assert isinstance(registered, nio.RegisterResponse), registered
        await client.logout()

        login = await client.login("correct horse", device_name="nio test")
        assert isinstance(login, nio.LoginResponse), login
        assert client.user_id == f"@{localpart}:localhost"

        whoami = await client.whoami()
        assert isinstance(whoami, nio.WhoamiResponse), whoami
        assert whoami.user_id == client.user_id
        assert whoami.device_id == login.device_id

        set_name = await client.set_displayname("Nio Tester")
        assert isinstance(set_name, nio.ProfileSetDisplayNameResponse), set_name
        name = await client.get_displayname()
        assert isinstance(name, nio.ProfileGetDisplayNameResponse) and name.displayname == "Nio Tester"

        logout = await client.logout()
        assert isinstance(logout, nio.LogoutResponse), logout
        after = await client.whoami()
        assert isinstance(after, nio.WhoamiError) and after.status_code == "M_UNKNOWN_TOKEN"
    finally:
        await client.close()
