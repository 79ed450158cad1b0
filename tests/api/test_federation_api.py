"""The server-server endpoints available so far, in process: keys, notary, version, profile and
directory queries (X-Matrix signed as a remote server would), and /.well-known/matrix/server."""

from __future__ import annotations

import io
import json
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image
from signedjson.key import generate_signing_key
from signedjson.sign import verify_signed_json
from yarl import URL

from homeserver.app import create_app_from_config
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey, decode_verify_key, load_or_create_signing_key
from homeserver.crypto.request_auth import sign_request

from ..conftest import make_config, services_of
from .helpers import auth, register

SERVER = "test.local"
REMOTE = "remote.example"
REMOTE_KEY = ServerSigningKey.from_signing_key(generate_signing_key("r1"))
DAY = 24 * 3600 * 1000


async def start(aiohttp_client: Any, tmp_path: Path, **extra: Any) -> Any:
    client = await aiohttp_client(create_app_from_config(make_config(tmp_path, **extra)))
    services = services_of(client)
    services.keyring = InMemoryKeyring(
        (ServerVerifyKey(REMOTE, REMOTE_KEY.key_id, REMOTE_KEY.verify_key, 2**62),)
    )
    return client


async def signed_get(client: Any, path: str, args: dict[str, str], key: ServerSigningKey = REMOTE_KEY) -> Any:
    uri = path + ("?" + urllib.parse.urlencode(args) if args else "")
    header = sign_request(key, origin=REMOTE, destination=SERVER, method="GET", uri=uri)
    # encoded=True: the request line must be exactly what was signed (no re-quoting)
    return await client.get(URL(uri, encoded=True), headers={"Authorization": header})


async def test_own_keys(aiohttp_client: Any, tmp_path: Path) -> None:
    old = load_or_create_signing_key(str(tmp_path / "old.key"))
    client = await start(
        aiohttp_client,
        tmp_path,
        old_signing_keys={old.key_id: {"key": old.verify_key_base64, "expired_ts": 5}},
    )
    resp = await client.get("/_matrix/key/v2/server")
    assert resp.status == 200
    body = await resp.json()
    services = services_of(client)
    key = services.signing_key
    assert body["server_name"] == SERVER
    assert body["verify_keys"] == {key.key_id: {"key": key.verify_key_base64}}
    assert body["old_verify_keys"] == {old.key_id: {"key": old.verify_key_base64, "expired_ts": 5}}
    now = services.clock.time_ms()
    assert now < body["valid_until_ts"] <= now + DAY + 60_000
    verify_signed_json(body, SERVER, decode_verify_key(key.key_id, key.verify_key_base64))


async def test_notary_validation(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    for body, errcode in [
        ({}, "M_BAD_JSON"),
        ({"server_keys": []}, "M_BAD_JSON"),
        ({"server_keys": {"bad name!": {}}}, "M_INVALID_PARAM"),
        ({"server_keys": {REMOTE: []}}, "M_BAD_JSON"),
    ]:
        resp = await client.post("/_matrix/key/v2/query", json=body)
        assert (resp.status, (await resp.json())["errcode"]) == (400, errcode), body
    resp = await client.post("/_matrix/key/v2/query", json={"server_keys": {}})
    assert (resp.status, await resp.json()) == (200, {"server_keys": []})
    # our own keys, through the notary API
    resp = await client.post("/_matrix/key/v2/query", json={"server_keys": {SERVER: {}}})
    [own] = (await resp.json())["server_keys"]
    assert own["server_name"] == SERVER
    resp = await client.get(f"/_matrix/key/v2/query/{SERVER}?minimum_valid_until_ts=x")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_INVALID_PARAM")


async def test_version(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    resp = await client.get("/_matrix/federation/v1/version")
    body = await resp.json()
    assert resp.status == 200 and set(body["server"]) == {"name", "version"}


async def test_profile_query(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client, "alice")
    resp = await client.put(
        f"/_matrix/client/v3/profile/{alice['user_id']}/displayname",
        json={"displayname": "Alice"},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200
    path = "/_matrix/federation/v1/query/profile"
    resp = await signed_get(client, path, {"user_id": alice["user_id"]})
    assert (resp.status, await resp.json()) == (200, {"displayname": "Alice"})
    resp = await signed_get(client, path, {"user_id": alice["user_id"], "field": "avatar_url"})
    assert (resp.status, await resp.json()) == (200, {})
    for args, status, errcode in [
        ({"user_id": f"@nobody:{SERVER}"}, 404, "M_NOT_FOUND"),
        ({"user_id": "@someone:elsewhere.example"}, 400, "M_INVALID_PARAM"),
        ({"user_id": "not a user"}, 400, "M_INVALID_PARAM"),
        ({}, 400, "M_MISSING_PARAM"),
    ]:
        resp = await signed_get(client, path, args)
        assert (resp.status, (await resp.json())["errcode"]) == (status, errcode), args
    # unsigned, or signed with the wrong key
    resp = await client.get(f"{path}?user_id=%40alice%3Atest.local")
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNAUTHORIZED")
    forged = ServerSigningKey.from_signing_key(generate_signing_key("r1"))
    resp = await signed_get(client, path, {"user_id": alice["user_id"]}, key=forged)
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_directory_query(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client, "alice")
    resp = await client.post(
        "/_matrix/client/v3/createRoom", json={"room_alias_name": "hall"}, headers=auth(alice["access_token"])
    )
    room_id = (await resp.json())["room_id"]
    path = "/_matrix/federation/v1/query/directory"
    resp = await signed_get(client, path, {"room_alias": f"#hall:{SERVER}"})
    assert (resp.status, await resp.json()) == (200, {"room_id": room_id, "servers": [SERVER]})
    for args, status, errcode in [
        ({"room_alias": f"#nope:{SERVER}"}, 404, "M_NOT_FOUND"),
        ({"room_alias": "#x:elsewhere.example"}, 400, "M_INVALID_PARAM"),
        ({"room_alias": "hall"}, 400, "M_INVALID_PARAM"),
        ({}, 400, "M_MISSING_PARAM"),
    ]:
        resp = await signed_get(client, path, args)
        assert (resp.status, (await resp.json())["errcode"]) == (status, errcode), args


async def test_domain_whitelist_refuses_other_origins(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path, federation_domain_whitelist=["friend.example"])
    resp = await signed_get(client, "/_matrix/federation/v1/query/profile", {"user_id": f"@a:{SERVER}"})
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    # outbound too: a client asking about a non-whitelisted server gets 403 without a request
    alice = await register(client)
    resp = await client.get(
        "/_matrix/client/v3/profile/@x:remote.example", headers=auth(alice["access_token"])
    )
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")


async def test_server_well_known(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    resp = await client.get("/.well-known/matrix/server")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    other = tmp_path / "b"
    other.mkdir()
    client = await start(
        aiohttp_client, other, serve_server_wellknown=True, public_baseurl="https://matrix.example.com/"
    )
    resp = await client.get("/.well-known/matrix/server")
    assert (resp.status, await resp.json()) == (200, {"m.server": "matrix.example.com:443"})
    third = tmp_path / "c"
    third.mkdir()
    client = await start(
        aiohttp_client, third, serve_server_wellknown=True, public_baseurl="https://m.example.com:8443/"
    )
    assert await (await client.get("/.well-known/matrix/server")).json() == {"m.server": "m.example.com:8443"}


async def test_profile_lookup_over_federation_can_be_disabled(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path, allow_profile_lookup_over_federation=False)
    alice = await register(client, "alice")
    resp = await signed_get(client, "/_matrix/federation/v1/query/profile", {"user_id": alice["user_id"]})
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")


async def _parts(resp: Any) -> list[tuple[str, bytes]]:
    reader = aiohttp.MultipartReader.from_response(resp)
    parts = []
    while (part := await reader.next()) is not None:
        assert isinstance(part, aiohttp.BodyPartReader)
        parts.append((part.headers.get("Content-Type", ""), bytes(await part.read())))
    return parts


async def test_federation_media_download_and_thumbnail(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client)
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 200, 30)).save(buf, "PNG")
    resp = await client.post(
        "/_matrix/media/v3/upload?filename=a.png",
        data=buf.getvalue(),
        headers={**auth(alice["access_token"]), "Content-Type": "image/png"},
    )
    media_id = (await resp.json())["content_uri"].rsplit("/", 1)[1]
    resp = await signed_get(client, f"/_matrix/federation/v1/media/download/{media_id}", {})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("multipart/mixed")
    (json_type, metadata), (content_type, content) = await _parts(resp)
    assert (json_type, json.loads(metadata)) == ("application/json", {})
    assert (content_type, content) == ("image/png", buf.getvalue())

    resp = await signed_get(
        client, f"/_matrix/federation/v1/media/thumbnail/{media_id}", {"width": "32", "height": "32"}
    )
    assert resp.status == 200
    (_, _), (thumb_type, thumb) = await _parts(resp)
    assert thumb_type.startswith("image/") and Image.open(io.BytesIO(thumb)).width <= 300

    resp = await signed_get(client, "/_matrix/federation/v1/media/download/nonexistent", {})
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    resp = await client.get(f"/_matrix/federation/v1/media/download/{media_id}")  # unsigned
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNAUTHORIZED")
