"""Inbound transactions: `PUT /_matrix/federation/v1/send/{txnId}`.

- At most 50 PDUs and 100 EDUs (else 400, nothing processed).
- Idempotent per (origin, txnId): the response is stored (`federation_inbound_txns`) and a retry
  gets it back without anything being processed again; a retry arriving while the first attempt
  is still running waits for it.
- PDUs go to `FederationEventHandler.on_receive_pdu` in order within a room, rooms in parallel.
  The response maps each PDU's event id to `{}` or `{"error": ...}`. PDUs for rooms this server
  does not know are left out of the response (their event id cannot even be computed without the
  room version), as Synapse does. PDUs relayed by `origin` for events of other servers are
  processed like any other: their signatures are those of the sender's server.
- EDUs go to `EduRegistry.dispatch`, concurrently with the PDUs. `m.typing` and `m.receipt` EDUs
  for rooms whose server ACL denies the origin are dropped (per room for receipts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.crypto.hashes import event_id_from_pdu
from homeserver.federation.acl import server_allowed
from homeserver.federation.edus import EduRegistry
from homeserver.federation.event_handler import SERVER_ACL, FederationEventHandler
from homeserver.state.service import StateService
from homeserver.storage.stores.federation_inbound import InboundFederationStore

logger = logging.getLogger(__name__)

MAX_PDUS: Final = 50
MAX_EDUS: Final = 100
# Answered transactions are remembered this long (a sender retries within minutes).
TXN_RETENTION_MS: Final = 7 * 24 * 3600 * 1000
_PRUNE_EVERY_MS: Final = 3600 * 1000


class TransactionHandler:
    def __init__(
        self,
        *,
        events: FederationEventHandler,
        edus: EduRegistry,
        store: InboundFederationStore,
        state: StateService,
        clock: Clock,
    ) -> None:
        self.events = events
        self.edus = edus
        self.store = store
        self.state = state
        self.clock = clock
        self._inflight: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._last_prune = 0

    @staticmethod
    def validate(body: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        pdus = body.get("pdus")
        edus = body.get("edus", [])
        if not isinstance(pdus, list):
            raise MatrixError(400, "M_BAD_JSON", "'pdus' must be a list")
        if edus is None:
            edus = []
        if not isinstance(edus, list):
            raise MatrixError(400, "M_BAD_JSON", "'edus' must be a list")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise MatrixError(
                400, "M_BAD_JSON", f"A transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
            )
        return pdus, edus

    async def on_transaction(self, origin: str, txn_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        pdus, edus = self.validate(body)
        key = (origin, txn_id)
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        stored = await self.store.get_txn_response(origin, txn_id)
        if stored is not None:
            return stored
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self._process(origin, pdus, edus)
            await self.store.store_txn_response(origin, txn_id, response, self.clock.time_ms())
            future.set_result(response)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            del self._inflight[key]
        await self._maybe_prune()
        return response

    async def _maybe_prune(self) -> None:
        now = self.clock.time_ms()
        if now - self._last_prune < _PRUNE_EVERY_MS:
            return
        self._last_prune = now
        try:
            await self.store.prune_txns_before(now - TXN_RETENTION_MS)
        except Exception:
            logger.exception("pruning answered federation transactions failed")

    async def _process(self, origin: str, pdus: list[Any], edus: list[Any]) -> dict[str, Any]:
        by_room: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for pdu in pdus:
            if not isinstance(pdu, Mapping):
                logger.info("dropping a PDU from %s: not an object", origin)
                continue
            room_id = pdu.get("room_id")
            if not isinstance(room_id, str):
                logger.info("dropping a PDU from %s: no room_id", origin)
                continue
            snapshot = await self.state.get(room_id)
            if snapshot is None:
                logger.info("ignoring a PDU from %s for unknown room %s", origin, room_id)
                continue
            try:
                event_id = event_id_from_pdu(pdu, snapshot.version)
            except Exception:  # not encodable as (canonical) JSON
                logger.info("dropping a PDU from %s: its event id cannot be computed", origin)
                continue
            by_room.setdefault(room_id, []).append((event_id, pdu))

        results: dict[str, dict[str, str]] = {}

        async def room_worker(items: list[tuple[str, Mapping[str, Any]]]) -> None:
            for event_id, pdu in items:
                try:
                    await self.events.on_receive_pdu(origin, pdu)
                    results[event_id] = {}
                except MatrixError as exc:
                    results[event_id] = {"error": exc.error}
                except Exception:
                    logger.exception("processing %s from %s failed", event_id, origin)
                    results[event_id] = {"error": "Internal error while processing the event"}

        await asyncio.gather(*(room_worker(items) for items in by_room.values()), self._edus(origin, edus))
        return {"pdus": results}

    async def _edus(self, origin: str, edus: list[Any]) -> None:
        for edu in edus:
            if not isinstance(edu, Mapping) or not isinstance(edu.get("edu_type"), str):
                logger.info("dropping a malformed EDU from %s", origin)
                continue
            edu_type = edu["edu_type"]
            content = await self._acl_filtered(origin, edu_type, edu.get("content"))
            if content is None:
                continue
            await self.edus.dispatch(origin, edu_type, content)

    async def _allowed_in(self, origin: str, room_id: Any) -> bool:
        if not isinstance(room_id, str):
            return True  # not ours to judge: the handler validates its own input
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            return True
        acl = snapshot.get(SERVER_ACL)
        return acl is None or server_allowed(origin, acl.content)

    async def _acl_filtered(self, origin: str, edu_type: str, content: Any) -> Any:
        """The EDU content with what the room ACLs deny `origin` removed; None to drop it."""
        if not isinstance(content, Mapping):
            return content
        if edu_type == "m.typing":
            if not await self._allowed_in(origin, content.get("room_id")):
                logger.info("dropping m.typing from %s: denied by the room's server ACL", origin)
                return None
            return content
        if edu_type == "m.receipt":
            kept = {r: v for r, v in content.items() if await self._allowed_in(origin, r)}
            if len(kept) != len(content):
                logger.info("dropping receipts from %s in rooms whose server ACL denies it", origin)
            return kept or None
        return content
