"""The federation media multipart reader and the Content-Disposition filename parser."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from homeserver.media.headers import filename_from_disposition
from homeserver.media.multipart import (
    HEADERS_LIMIT,
    JSON_LIMIT,
    PREAMBLE_LIMIT,
    MediaMultipart,
    MultipartError,
    boundary_of,
)

MEDIA = bytes(range(256)) * 40 + b"\r\n--notquite\r\n--bound"  # looks like delimiters, is not


def body(boundary: str = "bound42", media: bytes = MEDIA, preamble: bytes = b"") -> bytes:
    return (
        preamble
        + f'--{boundary}\r\nContent-Type: application/json\r\n\r\n{{"k": 1}}\r\n'.encode()
        + f"--{boundary}\r\nContent-Type: image/png\r\n".encode()
        + b"Content-Disposition: inline; filename=a.png\r\n\r\n"
        + media
        + f"\r\n--{boundary}--\r\n".encode()
    )


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def read_all(data: bytes, size: int, boundary: str = "bound42") -> tuple[dict, dict, bytes]:  # type: ignore[type-arg]
    reader = MediaMultipart(chunked(data, size), boundary)
    meta = await reader.metadata()
    headers = await reader.media_headers()
    content = b"".join([c async for c in reader.media_chunks()])
    return meta, headers, content


@pytest.mark.parametrize("size", [1, 2, 7, 13, 64, 4096, 1 << 20])
async def test_any_chunking(size: int) -> None:
    meta, headers, content = await read_all(body(preamble=b"ignored preamble\r\n"), size)
    assert meta == {"k": 1}
    assert headers == {"content-type": "image/png", "content-disposition": "inline; filename=a.png"}
    assert content == MEDIA


async def test_location_part_and_empty_json() -> None:
    data = b"--b\r\nContent-Type: application/json\r\n\r\n\r\n--b\r\nLocation: https://cdn.example/x\r\n\r\n\r\n--b--"
    reader = MediaMultipart(chunked(data, 5), "b")
    assert await reader.metadata() == {}
    assert await reader.media_headers() == {"location": "https://cdn.example/x"}


async def test_empty_media() -> None:
    assert (await read_all(body(media=b""), 3))[2] == b""


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing
        b"--bound42\r\nContent-Type: application/json\r\n\r\n{}\r\n--bound42--\r\n",  # one part only
        b"--bound42\r\nContent-Type: text/plain\r\n\r\n{}\r\n--bound42\r\n\r\nx\r\n--bound42--",  # not JSON
        b"--bound42\r\nContent-Type: application/json\r\n\r\n[1]\r\n--bound42\r\n\r\nx\r\n--bound42--",
        b"--bound42\r\nContent-Type: application/json\r\n\r\n{nope\r\n--bound42\r\n\r\nx\r\n--bound42--",
        b"--bound42\r\nContent-Type: application/json\r\n\r\n{}\r\n--bound42\r\n\r\nno closing delimiter",
        b"--bound42\r\nbroken header\r\n\r\n{}\r\n--bound42\r\n\r\nx\r\n--bound42--",
        b"x" * (PREAMBLE_LIMIT + 100),
        b"--bound42\r\nX: " + b"a" * (HEADERS_LIMIT + 10) + b"\r\n\r\n",
        b"--bound42\r\nContent-Type: application/json\r\n\r\n" + b" " * (JSON_LIMIT + 10),
    ],
)
async def test_malformed(data: bytes) -> None:
    with pytest.raises(MultipartError):
        await read_all(data, 100)


def test_boundary_of() -> None:
    assert boundary_of("multipart/mixed; boundary=abc") == "abc"
    assert boundary_of('Multipart/Mixed; charset=x; boundary="a b:c"') == "a b:c"
    assert boundary_of("multipart/form-data; boundary=abc") is None
    assert boundary_of("image/png") is None
    assert boundary_of("multipart/mixed") is None
    assert boundary_of(None) is None


def test_filename_from_disposition() -> None:
    assert filename_from_disposition('inline; filename="a b.png"') == "a b.png"
    assert filename_from_disposition("attachment; filename=plain.txt; size=3") == "plain.txt"
    assert filename_from_disposition("attachment; filename=x.txt; filename*=utf-8''%E2%82%AC.txt") == "€.txt"
    assert filename_from_disposition('attachment; filename="a\\"q.txt"') == 'a"q.txt'
    assert filename_from_disposition('attachment; filename="../../etc/passwd"') == ".._.._etc_passwd"
    assert filename_from_disposition("attachment; filename*=bogus''x") is None
    assert filename_from_disposition("inline") is None
    assert filename_from_disposition(None) is None
