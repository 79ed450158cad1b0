"""One transaction: its body (PDUs in federation form, EDUs) and the `PUT /send/{txnId}` call.

Spec (server-server "Transactions"): at most 50 PDUs and 100 EDUs per transaction; the receiver
answers 200 with a result per PDU (an error for one PDU does not fail the transaction), so only a
transport failure or an error status makes us send the same transaction again.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from homeserver.events.redaction import prune_event_dict
from homeserver.federation.backoff import NotRetryingDestination
from homeserver.federation.client import (
    FederationClient,
    FederationDenied,
    RemoteHttpError,
    RequestSendFailed,
)
from homeserver.storage.stores.events import EventStore, StoredEvent

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TXN = 50
MAX_EDUS_PER_TXN = 100
TXN_TIME_LIMIT_S = 60.0
SHARED_UNSIGNED = frozenset({"invite_room_state", "knock_room_state"})


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # 2xx: drop the transaction's contents
    RETRY = "retry"  # unreachable, timeout, 5xx, 429, backing off: send the same transaction later
    REJECTED = "rejected"  # another 4xx: the receiver will never take it; drop it and catch up later
    DENIED = "denied"  # not in federation_domain_whitelist: drop it


def pdu_json(stored: StoredEvent) -> dict[str, Any]:
    """The event as other servers must see it: redacted if it was, and of our local `unsigned`
    data only what the spec shares (the stripped room state of an invite or knock)."""
    pdu = dict(stored.event.pdu)
    if stored.redacted_by is not None:
        pdu = prune_event_dict(stored.event.room_version, pdu)
    unsigned = pdu.pop("unsigned", None)
    if isinstance(unsigned, dict):
        shared = {k: v for k, v in unsigned.items() if k in SHARED_UNSIGNED}
        if shared:
            pdu["unsigned"] = shared
    return pdu


async def load_pdus(events: EventStore, event_ids: Sequence[str]) -> list[dict[str, Any]]:
    """PDUs in the given order; events purged since they were queued are skipped."""
    found = await events.get_events(list(event_ids))
    return [pdu_json(found[e]) for e in event_ids if e in found]


def edu(edu_type: str, content: Mapping[str, Any]) -> dict[str, Any]:
    return {"edu_type": edu_type, "content": dict(content)}


async def send_transaction(
    client: FederationClient, destination: str, txn_id: str, body: Mapping[str, Any]
) -> tuple[Outcome, str]:
    """PUT the transaction; (outcome, a short reason for logs and metrics)."""
    path = f"/_matrix/federation/v1/send/{quote(txn_id, safe='')}"
    try:
        response = await client.request("PUT", destination, path, None, body, time_limit=TXN_TIME_LIMIT_S)
    except FederationDenied:
        return Outcome.DENIED, "not in federation_domain_whitelist"
    except NotRetryingDestination:
        return Outcome.RETRY, "backing off"
    except RequestSendFailed as exc:
        return Outcome.RETRY, exc.reason
    except RemoteHttpError as exc:
        if exc.status >= 500 or exc.status == 429:
            return Outcome.RETRY, exc.reason
        return Outcome.REJECTED, exc.reason
    results = response.get("pdus") if isinstance(response, dict) else None
    if isinstance(results, dict):
        for event_id, result in results.items():
            if isinstance(result, dict) and result.get("error"):
                logger.info("TX [%s] %s: refused %s: %s", destination, txn_id, event_id, result.get("error"))
    return Outcome.DELIVERED, "ok"
