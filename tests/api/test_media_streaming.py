"""A 300 MB upload and download through a real server process: both stream, and the server's
peak RSS (VmHWM) stays flat. The figure is noted in docs/media.md."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from synapse_compat_tests.client import MatrixClient, register_user
from synapse_compat_tests.launcher import launch

SIZE = 300 * 1024 * 1024
CHUNK = 1024 * 1024
# Peak RSS growth allowed for moving 300 MB each way: a small multiple of the chunk buffers.
MAX_GROWTH = 48 * 1024 * 1024


def _memory(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


async def _body(total: int) -> AsyncIterator[bytes]:
    block = bytes(range(256)) * (CHUNK // 256)
    sent = 0
    while sent < total:
        piece = block[: min(CHUNK, total - sent)]
        sent += len(piece)
        yield piece


def _expected_sha256(total: int) -> str:
    block = bytes(range(256)) * (CHUNK // 256)
    digest = hashlib.sha256()
    for offset in range(0, total, CHUNK):
        digest.update(block[: min(CHUNK, total - offset)])
    return digest.hexdigest()


async def test_300mb_upload_and_download_stream(tmp_path: Path) -> None:
    server = launch("sqlite", tmp_path, overrides={"max_upload_size": "400M"})
    try:
        _, token, _ = register_user(MatrixClient(server.base_url), server.shared_secret)
        headers = {"Authorization": f"Bearer {token}"}
        pid = server.process.pid
        async with aiohttp.ClientSession(server.base_url, timeout=aiohttp.ClientTimeout(total=600)) as http:
            # Warm up every code path with a small file first, then take the baseline.
            for size in (CHUNK * 3, CHUNK * 3):
                resp = await http.post(
                    "/_matrix/media/v3/upload",
                    data=_body(size),
                    headers={**headers, "Content-Type": "application/octet-stream"},
                )
                mxc = (await resp.json())["content_uri"][6:]
                resp = await http.get(f"/_matrix/client/v1/media/download/{mxc}", headers=headers)
                async for _ in resp.content.iter_chunked(CHUNK):
                    pass
            before = _memory(pid)

            resp = await http.post(
                "/_matrix/media/v3/upload?filename=big.bin",
                data=_body(SIZE),
                headers={**headers, "Content-Type": "application/octet-stream", "Content-Length": str(SIZE)},
            )
            body = await resp.json()
            assert resp.status == 200, body
            mxc = body["content_uri"][6:]
            after_upload = _memory(pid)

            digest = hashlib.sha256()
            received = 0
            async with http.get(f"/_matrix/client/v1/media/download/{mxc}", headers=headers) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Length"] == str(SIZE)
                async for chunk in resp.content.iter_chunked(CHUNK):
                    digest.update(chunk)
                    received += len(chunk)
            after_download = _memory(pid)

            # A range from the far end of the file.
            async with http.get(
                f"/_matrix/client/v1/media/download/{mxc}", headers={**headers, "Range": "bytes=-1024"}
            ) as resp:
                assert resp.status == 206 and len(await resp.read()) == 1024
    finally:
        server.stop()

    assert received == SIZE
    assert digest.hexdigest() == _expected_sha256(SIZE)
    growth = after_download["VmHWM"] - before["VmHWM"]
    print(
        f"\nserver RSS: before {before['VmRSS'] >> 20} MiB (peak {before['VmHWM'] >> 20} MiB), "
        f"after 300 MB upload {after_upload['VmRSS'] >> 20} MiB, after download "
        f"{after_download['VmRSS'] >> 20} MiB (peak {after_download['VmHWM'] >> 20} MiB, "
        f"growth {growth / 2**20:.1f} MiB)"
    )
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth >> 20} MiB while streaming 300 MB"
