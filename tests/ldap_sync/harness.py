"""A real slapd with the school tree, our homeserver on a loopback port, an appservice
registration for the sync's bot, and the sync's config pointing at all three."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appservices import generate_registration, write_registration
from bridges.ldap_sync.config import SyncConfig, parse_config
from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig

from ..api.helpers import auth, register
from ..conftest import make_config
from ..ldap.slapd import BIND_DN, BIND_PASSWORD, GROUPS, ORG, Slapd

SERVER = "test.local"
BOT = f"@ldapsync:{SERVER}"


def sync_config_dict(
    tmp_path: Path, hs_url: str, ldap_uri: str, registration: Path, admin_token: str | None
) -> dict[str, Any]:
    return {
        "homeserver": {
            "url": hs_url,
            "server_name": SERVER,
            "registration": str(registration),
            "admin_access_token": admin_token,
        },
        "ldap": {
            "uri": ldap_uri,
            "bind_dn": BIND_DN,
            "bind_password": BIND_PASSWORD,
            "timeout": 3,
            "page_size": 3,
        },
        "users": {"base": ORG, "filter": "(objectClass=inetOrgPerson)"},
        "units": {"base": ORG, "name_attribute": "description"},
        "groups": {
            "base": GROUPS,
            "filter": "(&(objectClass=groupOfNames)(businessCategory=sync))",
            "unit_attribute": "seeAlso",
        },
        "power_levels": [{"attribute": "employeeType", "values": ["teacher"], "level": 50}],
        "leavers": {"erase": False},
        "state_db": str(tmp_path / "ldap-sync.db"),
    }


@dataclass
class Env:
    client: Any  # TestClient on the homeserver
    url: str
    admin_token: str
    registration: Path
    tmp_path: Path
    slapd: Slapd

    def config(self, **overrides: Any) -> SyncConfig:
        raw = sync_config_dict(self.tmp_path, self.url, self.slapd.uri, self.registration, self.admin_token)
        for key, value in overrides.items():
            raw[key] = value if not isinstance(value, dict) else {**raw.get(key, {}), **value}
        return parse_config(raw)

    async def get(self, path: str) -> Any:
        resp = await self.client.get(path, headers=auth(self.admin_token))
        assert resp.status == 200, (path, resp.status, await resp.text())
        return await resp.json()

    async def user(self, user_id: str) -> dict[str, Any] | None:
        resp = await self.client.get(f"/_synapse/admin/v2/users/{user_id}", headers=auth(self.admin_token))
        if resp.status == 404:
            return None
        assert resp.status == 200
        return dict(await resp.json())

    async def rooms(self) -> list[dict[str, Any]]:
        return list((await self.get("/_synapse/admin/v1/rooms?limit=500"))["rooms"])

    async def room_by_name(self, name: str) -> list[dict[str, Any]]:
        return [r for r in await self.rooms() if r["name"] == name]

    async def state(self, room_id: str) -> list[dict[str, Any]]:
        return list((await self.get(f"/_synapse/admin/v1/rooms/{room_id}/state"))["state"])

    async def members(self, room_id: str) -> set[str]:
        return set((await self.get(f"/_synapse/admin/v1/rooms/{room_id}/members"))["members"])


async def start(
    aiohttp_server: Any,
    aiohttp_client: Any,
    tmp_path: Path,
    slapd: Slapd,
    make: Callable[..., HomeserverConfig] | None = None,
    **hs_extra: Any,
) -> Env:
    """`make`: a config factory (tests/conftest.py `engine_config`, for PostgreSQL); SQLite by default."""
    registration = generate_registration(id="ldap-sync", url=None, sender_localpart="ldapsync")
    reg_path = tmp_path / "ldap-sync-registration.yaml"
    write_registration(reg_path, registration)
    if make is None:
        config = make_config(tmp_path, app_service_config_files=[str(reg_path)], **hs_extra)
    else:
        config = make(app_service_config_files=[str(reg_path)], **hs_extra)
    server = await aiohttp_server(create_app_from_config(config))
    client = await aiohttp_client(server)
    admin = await register(client, "operator", admin=True)
    return Env(client, str(server.make_url("")).rstrip("/"), admin["access_token"], reg_path, tmp_path, slapd)
