"""Pure parts of the federation sender: the federation form of a PDU and how a transaction's
outcome is classified."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.crypto.keys import ServerSigningKey
from homeserver.events.builder import build_event
from homeserver.events.room_versions import get_room_version
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import FederationDenied, RemoteHttpError, RequestSendFailed
from homeserver.federation.sender.transaction import Outcome, pdu_json, send_transaction
from homeserver.storage.stores.events import StoredEvent

KEY = ServerSigningKey.from_signing_key(generate_signing_key("k"))


def _stored(redacted: bool, unsigned: dict[str, Any] | None = None) -> StoredEvent:
    event = build_event(
        get_room_version("10"),
        room_id="!r:us.example",
        sender="@a:us.example",
        type="m.room.member",
        state_key="@b:them.example",
        content={"membership": "invite", "displayname": "Bee"},
        prev_event_ids=["$p"],
        auth_event_ids=["$a"],
        depth=3,
        origin_server_ts=1,
        server_name="us.example",
        signing_key=KEY,
        unsigned_extra=unsigned,
    )
    return StoredEvent(event, 10, "$redaction" if redacted else None)


def test_pdu_json_shares_only_the_spec_unsigned_fields() -> None:
    stored = _stored(False, {"invite_room_state": [{"type": "m.room.name"}], "transaction_id": "secret"})
    pdu = pdu_json(stored)
    assert pdu["unsigned"] == {"invite_room_state": [{"type": "m.room.name"}]}
    assert pdu["content"]["displayname"] == "Bee" and "signatures" in pdu
    assert "unsigned" not in pdu_json(_stored(False, {"transaction_id": "t"}))
    assert stored.event.pdu["unsigned"]["transaction_id"] == "secret"  # the stored copy is untouched


def test_pdu_json_of_a_redacted_event_is_pruned() -> None:
    pdu = pdu_json(_stored(True))
    assert pdu["content"] == {"membership": "invite"}
    assert "hashes" in pdu and "signatures" in pdu


class _Client:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[tuple[str, str, str]] = []

    async def request(self, method: str, destination: str, path: str, args: Any, body: Any, **kw: Any) -> Any:
        self.calls.append((method, destination, path))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        ({"pdus": {"$x": {"error": "bad"}}}, Outcome.DELIVERED),
        ({}, Outcome.DELIVERED),
        (RequestSendFailed("d", "refused"), Outcome.RETRY),
        (NotRetryingDestination("d", 5), Outcome.RETRY),
        (RemoteHttpError("d", 502, {}), Outcome.RETRY),
        (RemoteHttpError("d", 429, {"errcode": "M_LIMIT_EXCEEDED"}), Outcome.RETRY),
        (RemoteHttpError("d", 400, {"errcode": "M_BAD_JSON"}), Outcome.REJECTED),
        (RemoteHttpError("d", 403, {"errcode": "M_FORBIDDEN"}), Outcome.REJECTED),
        (FederationDenied("d", "no"), Outcome.DENIED),
    ],
)
async def test_transaction_outcomes(result: Any, outcome: Outcome) -> None:
    client = _Client(result)
    got, _reason = await send_transaction(client, "d.example", "17-1/x", {"pdus": []})  # type: ignore[arg-type]
    assert got is outcome
    assert client.calls == [("PUT", "d.example", "/_matrix/federation/v1/send/17-1%2Fx")]
