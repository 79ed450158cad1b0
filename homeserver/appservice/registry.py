"""Registered application services and the rules that follow from their namespaces.

An appservice authenticates with its `as_token` and acts as its `sender` user, or, with `?user_id=`,
as any registered user inside its user namespaces ("masquerading"). Exclusive namespaces also keep
ordinary users and other appservices out of those user ids and aliases. The rules mirror Synapse:
regexes are matched from the start of the id (`re.match`), the sender counts as inside the namespace,
masquerading outside it is 403 `M_FORBIDDEN`, and registering an id an appservice reserves is 400
`M_EXCLUSIVE`.

Loading registration files (`app_service_config_files`) builds an `InMemoryAppServiceRegistry`; any
other source (a database, an admin API) only has to implement `AppServiceRegistry`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from homeserver.core.errors import MatrixError


@dataclass(frozen=True, slots=True)
class Namespace:
    regex: str
    exclusive: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", re.compile(self.regex))

    def matches(self, value: str) -> bool:
        return self.pattern.match(value) is not None


def _first_match(namespaces: Iterable[Namespace], value: str) -> Namespace | None:
    for ns in namespaces:
        if ns.matches(value):
            return ns
    return None


@dataclass(frozen=True, slots=True)
class ApplicationService:
    id: str
    as_token: str = field(repr=False)
    hs_token: str = field(repr=False)
    sender: str  # full user id of the appservice's own user (sender_localpart on this server)
    url: str | None = None  # None: the homeserver never pushes transactions to it
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    receive_ephemeral: bool = False  # `receive_ephemeral`: the stable `ephemeral` transaction key
    protocols: tuple[str, ...] = ()
    msc3202: bool = False  # MSC3202: device-list changes in transactions
    push_to_device: bool = False
    # `de.sorunome.msc2409.push_ephemeral`: the unstable `de.sorunome.msc2409.ephemeral` key
    unstable_ephemeral: bool = False

    @property
    def wants_ephemeral(self) -> bool:
        """Typing, receipts and presence (and MSC2409 to-device) go into its transactions."""
        return self.receive_ephemeral or self.unstable_ephemeral

    @property
    def wants_to_device(self) -> bool:
        return self.wants_ephemeral or self.push_to_device

    def is_interested_in_user(self, user_id: str) -> bool:
        """The sender or a user inside a user namespace: the users it may act as."""
        return user_id == self.sender or _first_match(self.users, user_id) is not None

    def is_exclusive_user(self, user_id: str) -> bool:
        ns = _first_match(self.users, user_id)
        return user_id == self.sender or (ns is not None and ns.exclusive)

    def is_interested_in_alias(self, alias: str) -> bool:
        return _first_match(self.aliases, alias) is not None

    def is_exclusive_alias(self, alias: str) -> bool:
        ns = _first_match(self.aliases, alias)
        return ns is not None and ns.exclusive


class AppServiceRegistry(Protocol):
    def get_by_token(self, as_token: str) -> ApplicationService | None:
        """The appservice whose `as_token` this is, if any."""
        ...

    def all(self) -> Sequence[ApplicationService]: ...

    def get_by_id(self, service_id: str) -> ApplicationService | None: ...


class InMemoryAppServiceRegistry:
    def __init__(self, services: Iterable[ApplicationService] = ()) -> None:
        self._by_token: dict[str, ApplicationService] = {}
        for service in services:
            self.add(service)

    def add(self, service: ApplicationService) -> None:
        if service.as_token in self._by_token or any(s.id == service.id for s in self._by_token.values()):
            raise ValueError(f"duplicate appservice id or as_token: {service.id}")
        self._by_token[service.as_token] = service

    def get_by_token(self, as_token: str) -> ApplicationService | None:
        return self._by_token.get(as_token)

    def all(self) -> Sequence[ApplicationService]:
        return tuple(self._by_token.values())

    def get_by_id(self, service_id: str) -> ApplicationService | None:
        return next((s for s in self._by_token.values() if s.id == service_id), None)


# -- rules ----------------------------------------------------------------------------------------


def masquerade_target(service: ApplicationService, user_id: str | None) -> str:
    """The user an appservice request acts as: `?user_id=` when given, else the sender.

    Outside the appservice's user namespaces: 403 M_FORBIDDEN (as Synapse). Whether the user exists
    is checked by the caller, which has the user store.
    """
    if user_id is None or user_id == service.sender:
        return service.sender
    if not service.is_interested_in_user(user_id):
        raise MatrixError(
            403, "M_FORBIDDEN", f"Application service cannot masquerade as this user ({user_id})."
        )
    return user_id


def check_user_id_not_exclusive(
    registry: AppServiceRegistry, user_id: str, requester_appservice: ApplicationService | None = None
) -> None:
    """Registration of `user_id` by someone else than the appservice reserving it: 400 M_EXCLUSIVE."""
    for service in registry.all():
        if service is not requester_appservice and service.is_exclusive_user(user_id):
            raise MatrixError(400, "M_EXCLUSIVE", "This user ID is reserved by an application service.")


def check_appservice_may_register(service: ApplicationService, user_id: str) -> None:
    """An appservice registers only users inside its own namespaces: else 400 M_EXCLUSIVE."""
    if not service.is_interested_in_user(user_id):
        raise MatrixError(400, "M_EXCLUSIVE", "Invalid user localpart for this application service.")


def check_alias_not_exclusive(
    registry: AppServiceRegistry, alias: str, requester_appservice: ApplicationService | None = None
) -> None:
    """Creating an alias another appservice reserves: 400 M_EXCLUSIVE."""
    for service in registry.all():
        if service is not requester_appservice and service.is_exclusive_alias(alias):
            raise MatrixError(400, "M_EXCLUSIVE", "This alias is reserved by an application service.")
