"""Long-polls wake only once a change is visible, so no change is lost between syncs.

Stream positions become visible in order: a write that commits while an earlier id of the same
stream is still in flight (a concurrent /keys/upload, another user's write) stays invisible until
that id completes. Waking the syncing users at commit time would hand them a token without the
change; they would park again and nobody would wake them when the earlier id completed. This was
seen with matrix-js-sdk: right after `bootstrapCrossSigning` the client's own device was not yet
reported as signed by its self-signing key (the signature upload's device-list change reached
the client only at the next unrelated change).

Each test holds an id of a stream in flight (as a slow concurrent writer would), makes a change
through the HTTP API, releases the id, and checks that the parked long-poll returns with the
change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from synapse_compat_tests.e2ee_support import CrossSigning, DeviceKeys

from ..conftest import services_of
from .ephemeral_helpers import NO_PRESENCE, V3, User, parked, q


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


async def _held_while(hs: Any, stream_name: str, change: Callable[[], Awaitable[None]]) -> None:
    stream = getattr(services_of(hs), stream_name)
    async with stream.next():  # an earlier writer, still in flight
        await change()


async def test_signature_upload_wakes_own_sync_after_earlier_change(hs: Any) -> None:
    alice = await User.new(hs)
    device = DeviceKeys(alice.user_id, alice.device_id)
    await alice.post(f"{V3}/keys/upload", {"device_keys": device.signed()})
    keys = CrossSigning(alice.user_id)
    await alice.post(f"{V3}/keys/device_signing/upload", keys.upload_body())
    stream = alice.stream()
    await stream.sync()
    waiter = stream.start()
    await parked(hs)

    ssk_id = f"ed25519:{keys.self_signing.public}"

    async def sign_own_device() -> None:
        signed = keys.self_signing.sign(device.signed(), alice.user_id, ssk_id)
        result = await alice.post(f"{V3}/keys/signatures/upload", {alice.user_id: {alice.device_id: signed}})
        assert result == {"failures": {}}

    await _held_while(hs, "device_lists_stream", sign_own_device)
    body = await waiter
    assert alice.user_id in body.get("device_lists", {}).get("changed", []), body
    # What the client then asks: its device, signed by its self-signing key.
    query = await alice.post(f"{V3}/keys/query", {"device_keys": {alice.user_id: []}})
    assert ssk_id in query["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]


async def test_to_device_wakes_recipient_after_earlier_send(hs: Any) -> None:
    alice, bob = await User.new(hs), await User.new(hs)
    stream = bob.stream()
    await stream.sync()
    waiter = stream.start()
    await parked(hs)

    async def send() -> None:
        body = {"messages": {bob.user_id: {bob.device_id: {"hello": "bob"}}}}
        await alice.put(f"{V3}/sendToDevice/m.test/{q('txn1')}", body)

    await _held_while(hs, "to_device_stream", send)
    body = await waiter
    events = body.get("to_device", {}).get("events", [])
    assert [e["content"] for e in events] == [{"hello": "bob"}], body


async def test_account_data_wakes_owner_after_earlier_write(hs: Any) -> None:
    alice = await User.new(hs)
    stream = alice.stream()
    await stream.sync()
    waiter = stream.start()
    await parked(hs)

    async def write() -> None:
        await alice.put(f"{V3}/user/{q(alice.user_id)}/account_data/m.test", {"n": 1})

    await _held_while(hs, "account_data_stream", write)
    body = await waiter
    assert {"type": "m.test", "content": {"n": 1}} in body["account_data"]["events"], body
