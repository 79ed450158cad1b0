"""Synapse's admin APIs for event reports, registration tokens and the server version, and our
audit log extension (`GET /_synapse/admin/v1/audit_log`, `.../audit_log/export`): docs/admin.md."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver import __version__
from homeserver.core import json as hjson
from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.services.audit import AuditQuery, record_to_json

from .users import _bool, _choice, _int, _paging

routes = Router()
V1 = ("/_synapse/admin/v1",)
AUDIT_MAX_LIMIT = 1000


@routes.get("/server_version", auth=Auth.NONE, prefixes=V1)
async def server_version(req: ApiRequest) -> Any:
    return {"server_version": __version__}


# -- event reports --------------------------------------------------------------------------------


def _report_id(req: ApiRequest) -> int:
    raw = req.path["reportId"]
    if not raw.isdigit():
        raise MatrixError(
            400,
            "M_INVALID_PARAM",
            "The report_id parameter must be a string representing a positive integer.",
        )
    return int(raw)


@routes.get("/event_reports", auth=Auth.ADMIN, prefixes=V1)
async def list_event_reports(req: ApiRequest) -> Any:
    offset, limit = _paging(req)
    direction = _choice(req, "dir", ("f", "b"), "b")
    return await req.services.admin_reports.list_event_reports(
        offset=offset,
        limit=limit,
        newest_first=direction == "b",
        room_id=req.query.get("room_id") or None,
        user_id=req.query.get("user_id") or None,
        sender=req.query.get("event_sender_user_id") or None,
    )


@routes.get("/event_reports/{reportId}", auth=Auth.ADMIN, prefixes=V1)
async def get_event_report(req: ApiRequest) -> Any:
    return await req.services.admin_reports.get_event_report(_report_id(req))


@routes.delete("/event_reports/{reportId}", auth=Auth.ADMIN, prefixes=V1)
async def delete_event_report(req: ApiRequest) -> Any:
    await req.services.admin_reports.delete_event_report(req.user, _report_id(req))
    return {}


# -- registration tokens --------------------------------------------------------------------------


@routes.get("/registration_tokens", auth=Auth.ADMIN, prefixes=V1)
async def list_registration_tokens(req: ApiRequest) -> Any:
    tokens = await req.services.admin_reports.list_tokens(_bool(req, "valid"))
    return {"registration_tokens": tokens}


@routes.post("/registration_tokens/new", auth=Auth.ADMIN, prefixes=V1)
async def create_registration_token(req: ApiRequest) -> Any:
    body = await req.json()
    return await req.services.admin_reports.create_token(req.user, body)


@routes.get("/registration_tokens/{token}", auth=Auth.ADMIN, prefixes=V1)
async def get_registration_token(req: ApiRequest) -> Any:
    return await req.services.admin_reports.get_token(req.path["token"])


@routes.put("/registration_tokens/{token}", auth=Auth.ADMIN, prefixes=V1)
async def update_registration_token(req: ApiRequest) -> Any:
    body = await req.json()
    return await req.services.admin_reports.update_token(req.user, req.path["token"], body)


@routes.delete("/registration_tokens/{token}", auth=Auth.ADMIN, prefixes=V1)
async def delete_registration_token(req: ApiRequest) -> Any:
    await req.services.admin_reports.delete_token(req.user, req.path["token"])
    return {}


# -- audit log (our extension) --------------------------------------------------------------------


def _audit_query(req: ApiRequest) -> AuditQuery:
    q = req.query
    return AuditQuery(
        since_ts=_int(req, "from", -1) if "from" in q else None,
        until_ts=_int(req, "to", -1) if "to" in q else None,
        actor=q.get("actor") or None,
        action=q.get("action") or None,
        target=q.get("target") or None,
    )


@routes.get("/audit_log", auth=Auth.ADMIN, prefixes=V1)
async def list_audit_log(req: ApiRequest) -> Any:
    query = _audit_query(req)
    limit = min(_int(req, "limit", 100), AUDIT_MAX_LIMIT)
    direction = _choice(req, "dir", ("f", "b"), "b")
    after = _int(req, "next_token", -1) if "next_token" in req.query else None
    page = await req.services.audit.query(query, after_id=after, limit=limit, newest_first=direction == "b")
    body: dict[str, Any] = {"records": [record_to_json(r) for r in page]}
    if len(page) == limit and page:
        body["next_token"] = str(page[-1].id)
    return body


@routes.get("/audit_log/export", auth=Auth.ADMIN, prefixes=V1)
async def export_audit_log(req: ApiRequest) -> Any:
    query = _audit_query(req)
    audit = req.services.audit
    # The export is itself audited, before any record is sent.
    await audit.record(
        "admin.audit_log.export",
        actor=req.user.user_id,
        detail={k: v for k, v in req.query.items() if k in ("from", "to", "actor", "action", "target")},
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": 'attachment; filename="audit_log.jsonl"',
        }
    )
    await response.prepare(req.raw)
    async for record in audit.export(query):
        await response.write(hjson.dumps(record_to_json(record)) + b"\n")
    await response.write_eof()
    return response
