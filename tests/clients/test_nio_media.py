"""matrix-nio and media: upload a PNG and a thumbnail, send `m.image` with `info`, and another
user downloads both (and a server thumbnail) through authenticated media. With legacy
unauthenticated media switched off, requests without a token get nothing."""

from __future__ import annotations

import io
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest
from PIL import Image

from synapse_compat_tests.launcher import LaunchedServer, launch


def _png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    img = Image.new("RGB", size, color)
    img.paste((255, 255, 255), (0, 0, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


async def _user(server: LaunchedServer, name: str) -> nio.AsyncClient:
    localpart = f"{name}{secrets.token_hex(3)}"
    client = nio.AsyncClient(server.base_url, localpart)
    response = await client.register(localpart, "pw-" + localpart)
    assert isinstance(response, nio.RegisterResponse), response
    await client.sync(timeout=0)
    return client


async def _upload(client: nio.AsyncClient, data: bytes, content_type: str, filename: str) -> str:
    response, _keys = await client.upload(
        io.BytesIO(data), content_type=content_type, filename=filename, filesize=len(data)
    )
    assert isinstance(response, nio.UploadResponse), response
    return str(response.content_uri)


async def _sync_until(
    client: nio.AsyncClient, predicate: Callable[[nio.SyncResponse], bool], attempts: int = 20
) -> nio.SyncResponse:
    for _ in range(attempts):
        response = await client.sync(timeout=5000, since=client.next_batch)
        assert isinstance(response, nio.SyncResponse), response
        if predicate(response):
            return response
    raise AssertionError("condition not reached through sync")


@pytest.fixture
async def trio(server: LaunchedServer) -> AsyncIterator[tuple[nio.AsyncClient, ...]]:
    clients = [await _user(server, name) for name in ("alice", "bob", "carol")]
    try:
        yield tuple(clients)
    finally:
        for client in clients:
            await client.close()


async def test_image_message_with_thumbnail(trio: tuple[nio.AsyncClient, ...]) -> None:
    alice, bob, _carol = trio
    created = await alice.room_create(invite=[bob.user_id], preset=nio.RoomPreset.private_chat)
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id
    await _sync_until(bob, lambda r: room_id in r.rooms.invite)
    assert isinstance(await bob.join(room_id), nio.JoinResponse)

    image = _png((1000, 800), (20, 120, 220))
    thumbnail = _png((320, 256), (20, 120, 220))
    url = await _upload(alice, image, "image/png", "photo.png")
    thumbnail_url = await _upload(alice, thumbnail, "image/png", "thumbnail.png")
    content = {
        "msgtype": "m.image",
        "body": "photo.png",
        "url": url,
        "info": {
            "mimetype": "image/png",
            "size": len(image),
            "w": 1000,
            "h": 800,
            "thumbnail_url": thumbnail_url,
            "thumbnail_info": {"mimetype": "image/png", "size": len(thumbnail), "w": 320, "h": 256},
        },
    }
    sent = await alice.room_send(room_id, "m.room.message", content)
    assert isinstance(sent, nio.RoomSendResponse), sent

    def has_image(response: nio.SyncResponse) -> bool:
        room = response.rooms.join.get(room_id)
        return bool(room) and any(isinstance(e, nio.RoomMessageImage) for e in room.timeline.events)

    response = await _sync_until(bob, has_image)
    event = next(
        e for e in response.rooms.join[room_id].timeline.events if isinstance(e, nio.RoomMessageImage)
    )
    assert event.url == url and event.event_id == sent.event_id
    info = event.source["content"]["info"]
    assert info["thumbnail_url"] == thumbnail_url and info["w"] == 1000

    # Bob downloads the image and Alice's thumbnail through /_matrix/client/v1/media.
    download = await bob.download(mxc=event.url)
    assert isinstance(download, nio.MemoryDownloadResponse), download
    assert download.body == image
    assert download.content_type == "image/png"
    assert download.filename == "photo.png"
    download = await bob.download(mxc=info["thumbnail_url"])
    assert isinstance(download, nio.MemoryDownloadResponse), download
    assert download.body == thumbnail

    # And a server-side thumbnail of the original.
    server_name, media_id = event.url[len("mxc://") :].split("/")
    thumb = await bob.thumbnail(server_name, media_id, 96, 96, nio.ResizingMethod.crop)
    assert isinstance(thumb, nio.ThumbnailResponse), thumb
    assert thumb.content_type == "image/png"
    assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)
    thumb = await bob.thumbnail(server_name, media_id, 320, 240, nio.ResizingMethod.scale)
    assert isinstance(thumb, nio.ThumbnailResponse), thumb
    assert Image.open(io.BytesIO(thumb.body)).size == (300, 240)


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedServer]:
    """A server with legacy unauthenticated media switched off."""
    workdir: Path = tmp_path_factory.mktemp("hs-locked")
    launched = launch(
        "sqlite",
        workdir,
        overrides={
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "enable_authenticated_media": True,
            "allow_legacy_unauthenticated_media": False,
        },
    )
    try:
        yield launched
    finally:
        launched.stop()


async def test_no_token_no_media_when_legacy_access_is_off(locked_server: LaunchedServer) -> None:
    alice = await _user(locked_server, "alice")
    carol = await _user(locked_server, "carol")  # in no room at all
    try:
        image = _png((200, 100), (200, 0, 0))
        url = await _upload(alice, image, "image/png", "secret.png")
        mxc = url[len("mxc://") :]
        paths = [
            f"/_matrix/client/v1/media/download/{mxc}",
            f"/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32",
            f"/_matrix/media/v3/download/{mxc}",
            f"/_matrix/media/r0/download/{mxc}/secret.png",
            f"/_matrix/media/v3/thumbnail/{mxc}?width=32&height=32",
        ]
        async with aiohttp.ClientSession(locked_server.base_url) as http:
            for path in paths:
                async with http.get(path) as resp:
                    body: dict[str, Any] = await resp.json()
                    assert (resp.status, body["errcode"]) == (401, "M_MISSING_TOKEN"), path
        # An authenticated local user may fetch local media by its (unguessable) id, as in
        # Synapse: the id is the capability.
        download = await carol.download(mxc=url)
        assert isinstance(download, nio.MemoryDownloadResponse), download
        assert download.body == image
    finally:
        await alice.close()
        await carol.close()
