"""Serving media to other servers (server-server "Content Repository"): the checks around the
multipart answer of tests/api/test_federation_api.py, signed as a remote server would."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from ..conftest import services_of
from .helpers import auth, register
from .test_federation_api import signed_get, start

FED = "/_matrix/federation/v1/media"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (200, 100), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


async def _upload(client: Any, token: str, data: bytes, content_type: str) -> str:
    resp = await client.post(
        "/_matrix/media/v3/upload?filename=f",
        data=data,
        headers={**auth(token), "Content-Type": content_type},
    )
    assert resp.status == 200
    return str((await resp.json())["content_uri"]).rsplit("/", 1)[1]


async def _error(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["errcode"]


async def test_thumbnail_parameters(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    user = await register(client)
    media_id = await _upload(client, user["access_token"], _png(), "image/png")
    bad = [
        ({"height": "32"}, "M_MISSING_PARAM"),
        ({"width": "32"}, "M_MISSING_PARAM"),
        ({"width": "0", "height": "32"}, "M_INVALID_PARAM"),
        ({"width": "-5", "height": "32"}, "M_INVALID_PARAM"),
        ({"width": "abc", "height": "32"}, "M_INVALID_PARAM"),
        ({"width": "32", "height": "32", "method": "stretch"}, "M_INVALID_PARAM"),
        ({"width": "32", "height": "32", "animated": "perhaps"}, "M_INVALID_PARAM"),
        ({"width": "32", "height": "32", "timeout_ms": "soon"}, "M_INVALID_PARAM"),
    ]
    for args, errcode in bad:
        resp = await signed_get(client, f"{FED}/thumbnail/{media_id}", args)
        assert await _error(resp) == (400, errcode), args
    resp = await signed_get(
        client,
        f"{FED}/thumbnail/{media_id}",
        {"width": "32", "height": "32", "method": "crop", "animated": "false", "timeout_ms": "100"},
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("multipart/mixed")
    reader = aiohttp.MultipartReader.from_response(resp)
    meta = await reader.next()
    assert isinstance(meta, aiohttp.BodyPartReader) and json.loads(await meta.read()) == {}
    part = await reader.next()
    assert isinstance(part, aiohttp.BodyPartReader)
    assert Image.open(io.BytesIO(await part.read())).size == (32, 32)
    # Content that cannot be thumbnailed: 400 M_UNKNOWN (the spec's answer).
    text_id = await _upload(client, user["access_token"], b"hello", "text/plain")
    resp = await signed_get(client, f"{FED}/thumbnail/{text_id}", {"width": "32", "height": "32"})
    assert await _error(resp) == (400, "M_UNKNOWN")


async def test_not_served(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    services = services_of(client)
    admin = await register(client, admin=True)
    media_id = await _upload(client, admin["access_token"], _png(), "image/png")
    resp = await client.post(
        f"/_synapse/admin/v1/media/quarantine/test.local/{media_id}", headers=auth(admin["access_token"])
    )
    assert resp.status == 200
    for path, args in (
        (f"{FED}/download/{media_id}", {}),
        (f"{FED}/thumbnail/{media_id}", {"width": "32", "height": "32"}),
        (f"{FED}/download/unknownmedia", {}),
        (f"{FED}/download/bad.id", {}),
    ):
        assert await _error(await signed_get(client, path, args)) == (404, "M_NOT_FOUND"), path

    # Cached remote media is not ours to serve: the request names only a media id, of our server.
    now = services.clock.time_ms()
    await services.media.store.insert_remote_media(
        origin="remote.example",
        media_id="cachedremote",
        media_type="image/png",
        upload_name=None,
        media_length=1,
        now_ts=now,
        sha256="00",
        filesystem_id="cachedremotefile",
        authenticated=True,
    )
    resp = await signed_get(client, f"{FED}/download/cachedremote", {})
    assert await _error(resp) == (404, "M_NOT_FOUND")

    # Reserved with /create but not uploaded: 504 M_NOT_YET_UPLOADED once timeout_ms is up.
    resp = await client.post("/_matrix/media/v1/create", headers=auth(admin["access_token"]))
    pending = str((await resp.json())["content_uri"]).rsplit("/", 1)[1]
    resp = await signed_get(client, f"{FED}/download/{pending}", {"timeout_ms": "0"})
    assert await _error(resp) == (504, "M_NOT_YET_UPLOADED")

    # X-Matrix is required.
    resp = await client.get(f"{FED}/thumbnail/{media_id}?width=32&height=32")
    assert await _error(resp) == (401, "M_UNAUTHORIZED")
