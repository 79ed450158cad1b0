"""Pure media code: ids, headers, ranges, thumbnail selection and generation, HTML previews,
clamd protocol, media config."""

from __future__ import annotations

import asyncio
import io
import struct
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from homeserver.config import build_config
from homeserver.config.errors import ConfigError
from homeserver.media import thumbnails
from homeserver.media.headers import (
    clean_filename,
    content_disposition,
    is_inline_safe,
    normalise_content_type,
    served_content_type,
)
from homeserver.media.ids import generate_media_id, is_valid_media_id, parse_mxc
from homeserver.media.preview import url_blocked_by_pattern
from homeserver.media.preview_html import decode_html, parse_html
from homeserver.media.ranges import RangeNotSatisfiable, parse_range
from homeserver.media.scanner import ClamdScanner, ScannerUnavailable, parse_reply

# -- ids ------------------------------------------------------------------------------------


def test_media_ids() -> None:
    ids = {generate_media_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_valid_media_id(i) and len(i) == 24 for i in ids)
    for bad in ("", "../etc", "a/b", "a.b", "%2e%2e", "ä", "a" * 256):
        assert not is_valid_media_id(bad)
    assert parse_mxc("mxc://example.org/abc_-1") == ("example.org", "abc_-1")
    assert parse_mxc("mxc://example.org:8448/abc") == ("example.org:8448", "abc")
    for bad in ("http://x/y", "mxc://example.org", "mxc://exa mple/x", "mxc://127.0.0.1/../../etc/passwd"):
        assert parse_mxc(bad) is None


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "filename", "expected"),
    [
        ("image/png", "cat.png", 'inline; filename="cat.png"'),
        ("IMAGE/PNG; foo=bar", None, "inline"),
        ("text/plain; charset=utf-8", "a.txt", 'inline; filename="a.txt"'),
        ("text/html", "x.html", 'attachment; filename="x.html"'),
        ("image/svg+xml", "x.svg", 'attachment; filename="x.svg"'),
        ("application/javascript", None, "attachment"),
        ("application/octet-stream", 'a"b.bin', "attachment; filename*=utf-8''a%22b.bin"),
        ("image/jpeg", "사진.jpg", "inline; filename*=utf-8''%EC%82%AC%EC%A7%84.jpg"),
        ("image/jpeg", "evil\r\nSet-Cookie: x", 'inline; filename="evilSet-Cookie: x"'),
        ("image/jpeg", "../../etc/passwd", 'inline; filename=".._.._etc_passwd"'),
    ],
)
def test_content_disposition(content_type: str, filename: str | None, expected: str) -> None:
    assert content_disposition(content_type, filename) == expected


def test_content_types() -> None:
    assert normalise_content_type(None) == "application/octet-stream"
    assert normalise_content_type("") == "application/octet-stream"
    assert normalise_content_type("image/png") == "image/png"
    assert normalise_content_type('text/plain; charset="utf-8"') == 'text/plain; charset="utf-8"'
    assert normalise_content_type("text/html\r\nX-Evil: 1") == "application/octet-stream"
    assert normalise_content_type("not a type") == "application/octet-stream"
    assert served_content_type("text/plain") == "text/plain; charset=utf-8"
    assert served_content_type("text/csv; charset=latin1") == "text/csv; charset=latin1"
    assert served_content_type("image/png") == "image/png"
    assert is_inline_safe("video/mp4") and not is_inline_safe("text/html")
    assert clean_filename("  \x00 ") is None
    assert clean_filename("a" * 300) == "a" * 255


# -- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=10-", (10, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=50-5000", (50, 99)),
        ("bytes=5-1", None),  # invalid: ignored
        ("bytes=0-1,5-6", None),  # multi-range: whole body
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_range_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


# -- thumbnail selection --------------------------------------------------------------------

SYNAPSE_SIZES = [
    (32, 32, "crop"),
    (96, 96, "crop"),
    (320, 240, "scale"),
    (640, 480, "scale"),
    (800, 600, "scale"),
]


def _select(
    src: tuple[int, int], req: tuple[int, int], method: str, dynamic: bool = False
) -> tuple[int, int, str]:
    t = thumbnails.select_target(
        src[0], src[1], req[0], req[1], method, SYNAPSE_SIZES, dynamic=dynamic, media_type="image/png"
    )
    return t.width, t.height, t.method


def test_select_thumbnail() -> None:
    photo = (4000, 3000)
    assert _select(photo, (800, 600), "scale") == (800, 600, "scale")
    assert _select(photo, (500, 400), "scale") == (640, 480, "scale")
    assert _select(photo, (100, 100), "scale") == (320, 240, "scale")
    assert _select(photo, (96, 96), "crop") == (96, 96, "crop")
    assert _select(photo, (40, 40), "crop") == (96, 96, "crop")
    assert _select(photo, (20, 20), "crop") == (32, 32, "crop")
    # Larger than every configured size: the biggest there is (Synapse's behaviour).
    assert _select(photo, (2000, 2000), "scale") == (800, 600, "scale")
    # dynamic: exactly what was asked, without upscaling.
    assert _select(photo, (123, 77), "crop", dynamic=True) == (123, 77, "crop")
    assert _select((50, 40), (123, 77), "scale", dynamic=True) == (50, 40, "scale")


def test_never_upscale() -> None:
    for src in [(10, 10), (100, 30), (30, 100), (700, 500), (5000, 1)]:
        for w, h, method in SYNAPSE_SIZES:
            t_w, t_h = thumbnails.output_size(src[0], src[1], w, h, method)
            assert t_w <= src[0] and t_h <= src[1], (src, w, h, method)
            assert t_w >= 1 and t_h >= 1
    assert thumbnails.scale_size(1000, 800, 320, 240) == (300, 240)
    assert thumbnails.crop_size(50, 200, 96, 96) == (50, 50)


def _png(size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG", **save: Any) -> bytes:
    img = Image.new(mode, size, (10, 200, 30) if mode == "RGB" else None)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def test_generate_crop_and_scale(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_png((1000, 800)))
    probe = thumbnails.probe(str(path), 10_000_000)
    assert (probe.width, probe.height, probe.format, probe.animated) == (1000, 800, "PNG", False)
    data = thumbnails.generate(str(path), thumbnails.Target(96, 96, "crop", "image/png", False), 10_000_000)
    assert Image.open(io.BytesIO(data)).size == (96, 96)
    data = thumbnails.generate(
        str(path), thumbnails.Target(300, 240, "scale", "image/jpeg", False), 10_000_000
    )
    out = Image.open(io.BytesIO(data))
    assert (out.size, out.format) == ((300, 240), "JPEG")


def test_exif_orientation(tmp_path: Path) -> None:
    # A landscape JPEG whose EXIF says "rotate 90° clockwise": it displays as portrait.
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 100, 100))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    img.save(path, "JPEG", exif=exif.tobytes())
    probe = thumbnails.probe(str(path), 10_000_000)
    assert (probe.width, probe.height) == (100, 200)
    target = thumbnails.select_target(
        100, 200, 50, 50, "scale", SYNAPSE_SIZES, dynamic=True, media_type="image/jpeg"
    )
    data = thumbnails.generate(str(path), target, 10_000_000)
    out = Image.open(io.BytesIO(data)).convert("RGB")
    assert out.size == (25, 50)
    # After rotating clockwise the blue (left) half is on top.
    top, bottom = out.getpixel((12, 5)), out.getpixel((12, 45))
    assert top[2] > 200 and top[0] < 60, top
    assert bottom[0] > 200 and bottom[2] < 60, bottom


def test_image_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png((3000, 3000), mode="1"))  # tiny file, 9 M pixels
    assert path.stat().st_size < 100_000
    with pytest.raises(thumbnails.ImageTooLarge):
        thumbnails.probe(str(path), 1_000_000)
    with pytest.raises(thumbnails.ImageTooLarge):
        thumbnails.generate(str(path), thumbnails.Target(32, 32, "crop", "image/png", False), 1_000_000)
    not_image = tmp_path / "x.png"
    not_image.write_bytes(b"<html>not an image</html>")
    with pytest.raises(thumbnails.ThumbnailError):
        thumbnails.probe(str(not_image), 1_000_000)


def test_animated_thumbnail(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (400, 300), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    probe = thumbnails.probe(str(path), 10_000_000)
    assert probe.animated and probe.frames == 3
    data = thumbnails.generate(str(path), thumbnails.Target(96, 96, "crop", "image/webp", True), 10_000_000)
    out = Image.open(io.BytesIO(data))
    assert out.format == "WEBP" and out.is_animated and out.n_frames == 3 and out.size == (96, 96)
    static = thumbnails.generate(str(path), thumbnails.Target(96, 96, "crop", "image/png", False), 10_000_000)
    out = Image.open(io.BytesIO(static))
    assert out.format == "PNG" and not getattr(out, "is_animated", False)


# -- HTML previews --------------------------------------------------------------------------


def test_parse_html_opengraph() -> None:
    page = b"""<!doctype html><html><head>
    <title>Fallback title</title>
    <meta property="og:title" content="  The   Title ">
    <meta property="og:description" content="A description">
    <meta property="og:image" content="/img/cat.png">
    <meta property="og:type" content="article">
    <meta property="og:site_name" content="Example">
    <script>var x = "<meta property='og:title' content='evil'>";</script>
    </head><body><img src="other.png"></body></html>"""
    og = parse_html(page, "https://example.org/blog/post")
    assert og["og:title"] == "The Title"
    assert og["og:description"] == "A description"
    assert og["og:image"] == "https://example.org/img/cat.png"
    assert og["og:type"] == "article" and og["og:site_name"] == "Example"


def test_parse_html_fallbacks_and_charset() -> None:
    page = (
        '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title>'
        '<meta name="description" content="' + "x" * 2000 + '"></head>'
        '<body><img src="data:image/png;base64,AAAA"><img src="https://cdn.example/a.jpg"></body></html>'
    ).encode("latin-1")
    og = parse_html(page, "https://example.org/")
    assert og["og:title"] == "Café"
    assert len(og["og:description"]) == 500 and og["og:description"].endswith("…")
    assert og["og:image"] == "https://cdn.example/a.jpg"
    assert parse_html(b"<html><body>nothing</body></html>", "https://x/") == {}
    # javascript: images are dropped; broken markup does not raise.
    og = parse_html(b'<meta property="og:image" content="javascript:alert(1)"><title>t', "https://x/")
    assert "og:image" not in og and og["og:title"] == "t"
    assert decode_html("한국어".encode(), None) == "한국어"
    assert decode_html("한국어".encode("euc-kr"), "euc-kr") == "한국어"


def test_url_pattern_blacklist() -> None:
    blacklist: tuple[dict[str, str], ...] = (
        {"netloc": "google.com"},
        {"netloc": "*.google.com"},
        {"scheme": "http"},
        {"netloc": "www.acme.com", "path": "/foo"},
        {"netloc": "^.*\\.domain\\.com$"},
    )
    blocked = [
        "https://google.com/",
        "https://mail.google.com/x",
        "http://example.org/",
        "https://www.acme.com/foo",
        "https://a.domain.com/",
    ]
    allowed = ["https://example.org/", "https://www.acme.com/bar", "https://domain.com/"]
    for url in blocked:
        assert url_blocked_by_pattern(url, blacklist), url
    for url in allowed:
        assert not url_blocked_by_pattern(url, blacklist), url


# -- clamd protocol -------------------------------------------------------------------------


def test_parse_clamd_reply() -> None:
    assert parse_reply(b"stream: OK\0").clean
    verdict = parse_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0")
    assert not verdict.clean and verdict.signature == "Eicar-Test-Signature.UNOFFICIAL"
    with pytest.raises(ScannerUnavailable):
        parse_reply(b"INSTREAM size limit exceeded. ERROR\0")
    with pytest.raises(ScannerUnavailable):
        parse_reply(b"")


async def _fake_clamd(path: str, received: list[bytes], reply: bytes | None = None) -> asyncio.AbstractServer:
    """A clamd that speaks INSTREAM and flags any stream containing b'VIRUS'."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = await reader.readuntil(b"\0")
        assert command == b"zINSTREAM\0"
        data = bytearray()
        while True:
            (size,) = struct.unpack(">I", await reader.readexactly(4))
            if size == 0:
                break
            assert size <= 64 * 1024
            data += await reader.readexactly(size)
        received.append(bytes(data))
        answer = reply or (b"stream: Fake.Virus FOUND\0" if b"VIRUS" in data else b"stream: OK\0")
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, path)


async def test_clamd_instream_protocol(tmp_path: Path) -> None:
    sock = str(tmp_path / "c.sock")
    received: list[bytes] = []
    server = await _fake_clamd(sock, received)
    scanner = ClamdScanner(socket_path=sock, timeout=5)

    async def chunks(*parts: bytes) -> Any:
        for p in parts:
            yield p

    try:
        big = b"a" * 200_000
        assert (await scanner.scan(chunks(big, b"tail"))).clean
        assert received[-1] == big + b"tail"
        verdict = await scanner.scan(chunks(b"xxVIRUSxx"))
        assert (verdict.clean, verdict.signature) == (False, "Fake.Virus")
    finally:
        server.close()
        await server.wait_closed()
    with pytest.raises(ScannerUnavailable):
        await ClamdScanner(socket_path=str(tmp_path / "missing.sock")).scan(chunks(b"x"))


# -- config ---------------------------------------------------------------------------------


def test_media_config_keys() -> None:
    config = build_config({})
    media = config.media
    assert media.allow_legacy_unauthenticated_media is True
    assert media.clamd.enabled is False and media.clamd.fail_closed is True
    assert media.max_spider_size == 10 * 1024 * 1024
    assert media.media_upload_limits == ()
    config = build_config(
        {
            "clamd": {"socket": "/run/clamav/clamd.ctl", "timeout": "30s", "fail_closed": False},
            "media_upload_limits": [{"time_period": "1h", "max_size": "100M"}],
            "url_preview_url_blacklist": [{"netloc": "*.example.com"}],
            "allow_legacy_unauthenticated_media": False,
            "rc_url_preview": {"per_second": 2, "burst_count": 4},
        }
    )
    media = config.media
    assert media.clamd.enabled and media.clamd.timeout == 30_000 and not media.clamd.fail_closed
    assert media.media_upload_limits[0].time_period == 3600_000
    assert media.media_upload_limits[0].max_size == 100 * 1024 * 1024
    assert dict(media.url_preview_url_blacklist[0]) == {"netloc": "*.example.com"}
    assert media.rc_url_preview.burst_count == 4
    assert not config.unknown_keys
    with pytest.raises(ConfigError, match=r"clamd\.host"):
        build_config({"clamd": {"socket": "/x", "host": "h"}})
    with pytest.raises(ConfigError, match="max_size"):
        build_config({"media_upload_limits": [{"time_period": "1h"}]})
    with pytest.raises(ConfigError, match="url_preview_url_blacklist"):
        build_config({"url_preview_url_blacklist": [{"host": "x"}]})
