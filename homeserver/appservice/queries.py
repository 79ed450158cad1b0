"""Asking appservices about users and aliases this server does not know (yet).

A client refers to `@_irc_bob:example.org` or `#_irc_#matrix:example.org`; if an appservice's
namespace covers it, the appservice is asked (`GET /users/{userId}`, `GET /rooms/{alias}`) and
may create it on the spot, after which the lookup is retried once.
"""

from __future__ import annotations

from homeserver.appservice.api import AppServiceApi
from homeserver.appservice.registry import AppServiceRegistry


class AppServiceQueries:
    def __init__(self, registry: AppServiceRegistry, api: AppServiceApi) -> None:
        self.registry = registry
        self.api = api

    async def query_user(self, user_id: str) -> bool:
        """True when an interested appservice answered 2xx (it should have registered the user)."""
        for service in self.registry.all():
            if service.is_interested_in_user(user_id) and await self.api.query_exists(
                service, "users", user_id
            ):
                return True
        return False

    async def query_alias(self, alias: str) -> bool:
        """True when an interested appservice answered 2xx (it should have created the alias)."""
        for service in self.registry.all():
            if service.is_interested_in_alias(alias):
                if await self.api.query_exists(service, "rooms", alias):
                    return True
        return False
