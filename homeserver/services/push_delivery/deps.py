"""What every pusher worker needs, built once by the pool."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from homeserver.config.push import EmailConfig, PushConfig
from homeserver.core.clock import Clock
from homeserver.http.outbound import OutboundClient
from homeserver.services.visibility import VisibilityService
from homeserver.state.service import StateService
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.push_actions import PushActionStore
from homeserver.storage.stores.pushers import Pusher, PusherStore


@dataclass(frozen=True, slots=True)
class DeliveryDeps:
    store: PusherStore
    actions: PushActionStore
    events: EventStore
    state: StateService
    visibility: VisibilityService
    http: OutboundClient
    clock: Clock
    push: PushConfig
    email: EmailConfig
    current_position: Callable[[], int]  # the events stream position (committed and announced)
    # Removes a pusher the way a client's `kind: null` does (rejected pushkey, unsubscribe).
    remove_pusher: Callable[[str, str, str], Awaitable[None]]
    # The signed link in a notification email that removes that email pusher.
    unsubscribe_url: Callable[[Pusher], str]
