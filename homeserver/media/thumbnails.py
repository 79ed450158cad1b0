"""Thumbnails with Pillow: which size to produce (pure) and producing it (blocking: run in a thread).

Selection follows Synapse's `_select_thumbnail` over the configured sizes (or the exact request
with `dynamic_thumbnails`), computed on the real output dimensions for this image: nothing is
ever upscaled, and an image already no larger than the request is served as it is (spec:
"servers should return the original content rather than thumbnail it"). The EXIF orientation
is applied before anything is measured. Images over `max_image_pixels` are refused before
they are decoded, and Pillow's own decompression-bomb check stays on.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

# Source types we thumbnail, and the static type of their thumbnails (as Synapse).
THUMBNAILABLE = {
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/png": "image/png",
    "image/apng": "image/png",
    "image/gif": "image/png",
    "image/webp": "image/png",
    "image/bmp": "image/png",
    "image/x-ms-bmp": "image/png",
}
# Formats a browser renders inline and we may return untouched when small enough.
SERVABLE_AS_IS = frozenset({"JPEG", "PNG", "GIF", "WEBP"})
FORMAT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
ANIMATED_TYPE = "image/webp"  # the spec: servers SHOULD prefer webp for animated thumbnails
MAX_ANIMATED_FRAMES = 300
JPEG_QUALITY = 80
_ORIENTATION_TAG = 0x0112


class ThumbnailError(Exception):
    """The content cannot be thumbnailed (not an image, corrupt, unsupported)."""


class ImageTooLarge(ThumbnailError):
    pass


@dataclass(frozen=True, slots=True)
class ImageProbe:
    width: int  # after EXIF orientation
    height: int
    format: str  # Pillow's format name
    animated: bool
    frames: int


@dataclass(frozen=True, slots=True)
class Target:
    """A thumbnail to produce (or look up): its real output size, method and type."""

    width: int
    height: int
    method: str
    media_type: str
    animated: bool


def _open(path: str, max_pixels: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc)) from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ThumbnailError(f"not an image we can read: {exc}") from exc
    if img.width * img.height > max_pixels or img.width <= 0 or img.height <= 0:
        img.close()
        raise ImageTooLarge(f"{img.width}x{img.height} is over the {max_pixels}-pixel limit")
    return img


def _orientation(img: Any) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:
        return 1


def probe(path: str, max_pixels: int) -> ImageProbe:
    """Dimensions (oriented), format and animation of an image; reads the header only."""
    img = _open(path, max_pixels)
    try:
        width, height = img.size
        if _orientation(img) in (5, 6, 7, 8):
            width, height = height, width
        frames = int(getattr(img, "n_frames", 1) or 1)
        animated = bool(getattr(img, "is_animated", False))
        return ImageProbe(width, height, str(img.format or ""), animated, frames)
    finally:
        img.close()


# -- selection (pure) -----------------------------------------------------------------------


def scale_size(src_w: int, src_h: int, max_w: int, max_h: int) -> tuple[int, int]:
    """Fit inside max_w x max_h keeping the aspect ratio, never larger than the source."""
    if max_w * src_h < max_h * src_w:
        w, h = max_w, max((max_w * src_h) // src_w, 1)
    else:
        w, h = max((max_h * src_w) // src_h, 1), max_h
    if w >= src_w or h >= src_h:
        return src_w, src_h
    return w, h


def crop_size(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The box, shrunk (keeping its aspect) until the source can fill it without upscaling."""
    if box_w <= src_w and box_h <= src_h:
        return box_w, box_h
    factor = min(src_w / box_w, src_h / box_h)
    return max(int(box_w * factor), 1), max(int(box_h * factor), 1)


def output_size(src_w: int, src_h: int, width: int, height: int, method: str) -> tuple[int, int]:
    if method == "crop":
        return crop_size(src_w, src_h, width, height)
    return scale_size(src_w, src_h, width, height)


def select_target(
    src_w: int,
    src_h: int,
    req_w: int,
    req_h: int,
    method: str,
    sizes: list[tuple[int, int, str]],
    *,
    dynamic: bool,
    media_type: str,
    animated: bool = False,
) -> Target:
    """Synapse's choice among the candidate thumbnails, on their real output sizes."""
    if dynamic:
        w, h = output_size(src_w, src_h, req_w, req_h, method)
        return Target(w, h, method, media_type, animated)
    candidates = [s for s in sizes if s[2] == method] or list(sizes)
    if not candidates:
        w, h = output_size(src_w, src_h, req_w, req_h, method)
        return Target(w, h, method, media_type, animated)
    outputs = {(*output_size(src_w, src_h, cw, ch, m), m) for cw, ch, m in candidates}
    big_enough: list[tuple[Any, ...]] = []
    too_small: list[tuple[Any, ...]] = []
    for t_w, t_h, m in outputs:
        size_quality = abs((req_w - t_w) * (req_h - t_h))
        length_quality = t_w * t_h  # stand-in for the byte length Synapse compares
        if method == "crop":
            aspect_quality = abs(req_w * t_h - req_h * t_w)
            min_quality = 0 if req_w <= t_w and req_h <= t_h else 1
            key: tuple[Any, ...] = (aspect_quality, min_quality, size_quality, length_quality, t_w, t_h, m)
        else:
            key = (size_quality, length_quality, t_w, t_h, m)
        (big_enough if t_w >= req_w or t_h >= req_h else too_small).append(key)
    best = min(big_enough or too_small)
    t_w, t_h, m = best[-3], best[-2], best[-1]
    return Target(t_w, t_h, m, media_type, animated)


def thumbnail_type(source_type: str) -> str | None:
    return THUMBNAILABLE.get(source_type.split(";", 1)[0].strip().lower())


# -- generation (blocking) ------------------------------------------------------------------


def _resize_frame(frame: Any, target: Target) -> Any:
    """Scale (or scale to cover and centre-crop) one oriented frame to exactly target size."""
    if target.method == "crop":
        src_w, src_h = frame.size
        factor = max(target.width / src_w, target.height / src_h)
        scaled_w = max(target.width, round(src_w * factor))
        scaled_h = max(target.height, round(src_h * factor))
        left = (scaled_w - target.width) // 2
        top = (scaled_h - target.height) // 2
        # Resize only the part that survives the crop.
        box = (left / factor, top / factor, (left + target.width) / factor, (top + target.height) / factor)
        return frame.resize(
            (target.width, target.height), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0
        )
    return frame.resize((target.width, target.height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def _static(img: Any, target: Target) -> bytes:
    orientation = _orientation(img)
    if img.format == "JPEG":
        # Let libjpeg decode at a reduced scale (still at least the size we need).
        w, h = (target.height, target.width) if orientation in (5, 6, 7, 8) else (target.width, target.height)
        src_w, src_h = img.size
        factor = max(w / src_w, h / src_h) if target.method == "crop" else min(w / src_w, h / src_h)
        img.draft("RGB", (max(1, int(src_w * factor)), max(1, int(src_h * factor))))
    if getattr(img, "is_animated", False):
        img.seek(0)
    frame = ImageOps.exif_transpose(img)
    if target.media_type == "image/jpeg":
        frame = frame.convert("RGB")
    elif frame.mode not in ("RGB", "RGBA", "L", "LA"):
        frame = frame.convert("RGBA")
    out = _resize_frame(frame, target)
    buf = io.BytesIO()
    if target.media_type == "image/jpeg":
        out.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        out.save(buf, "PNG")
    return buf.getvalue()


def _animated(img: Any, target: Target, max_pixels: int) -> bytes:
    frames: list[Any] = []
    durations: list[int] = []
    budget = max_pixels * 4  # decoded pixels across all frames
    for frame in ImageSequence.Iterator(img):
        budget -= frame.width * frame.height
        if len(frames) >= MAX_ANIMATED_FRAMES or budget < 0:
            break
        durations.append(int(frame.info.get("duration", 100) or 100))
        frames.append(_resize_frame(frame.convert("RGBA"), target))
    if not frames:
        raise ThumbnailError("no frames")
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        quality=JPEG_QUALITY,
        method=4,
    )
    return buf.getvalue()


def generate(path: str, target: Target, max_pixels: int) -> bytes:
    """The thumbnail's bytes (small: at most a few hundred KiB at the configured sizes)."""
    img = _open(path, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if target.animated and getattr(img, "is_animated", False):
                return _animated(img, target, max_pixels)
            return _static(img, target)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except ThumbnailError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ThumbnailError(f"cannot thumbnail this image: {exc}") from exc
    finally:
        img.close()
