"""PUT /_matrix/federation/v1/send/{txnId} (transactions.yaml): PDUs and EDUs pushed to us.

The work is in federation/transactions.py (`TransactionHandler`)."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()

FED_V1 = ("/_matrix/federation/v1",)


@routes.put("/send/{txnId}", auth=Auth.SERVER, prefixes=FED_V1)
async def sendTransaction(req: ApiRequest) -> dict[str, Any]:
    body = await req.json(allow_empty=False)
    return await req.services.federation_transactions.on_transaction(req.origin, req.path["txnId"], body)
