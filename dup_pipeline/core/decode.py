"""Safe, fast image decoding: every failure becomes a :class:`BadFile` with a reason.

JPEGs are decoded at a reduced size (DCT scaling via ``Image.draft``), EXIF orientation is
applied, and every mode (grayscale, palette, RGBA, CMYK, 16-bit, float) is normalized to
8-bit RGB. Transparent pixels are composited onto white, as a viewer shows them.
"""

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dup_pipeline.core.inputs import INPUT_REASONS, UnusableInput, open_input_file

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF"})
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MIN_SIDE = 10
DEFAULT_WORK_SIDE = 256
ROTATING_ORIENTATIONS = frozenset({5, 6, 7, 8})

# Our own pixel limit (``max_pixels``) is checked from the header before decoding. Pillow's
# process-wide limit (``Image.MAX_IMAGE_PIXELS``) is left as the user set it: only an image that
# Pillow refuses but max_pixels allows is decoded again with Pillow's limit raised, under this lock.
_PILLOW_LIMIT_LOCK = threading.Lock()

BAD_REASONS: dict[str, str] = {
    "missing": "file no longer exists",
    **INPUT_REASONS,
    "empty": "file is empty (0 bytes)",
    "not_an_image": "not an image file",
    "unsupported_format": "image format or mode not supported",
    "corrupt": "image data is truncated or corrupt",
    "too_large": "image is too large (decompression bomb guard)",
    "too_small": "image is too small",
    "bounding_box_outside": "the bounding_box lies wholly outside the image",
}


class BadFile(Exception):
    """A file that cannot be used; ``reason`` is a key of :data:`BAD_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """An 8-bit RGB image (possibly reduced) with facts about the original file."""

    image: Image.Image
    width: int
    height: int
    mode: str
    format: str
    channels: int


@contextlib.contextmanager
def open_image_file(path: str) -> Iterator[BinaryIO]:
    """Open a file for decoding (read lazily, never whole), turning OS errors into :class:`BadFile`."""
    try:
        handle = open_input_file(path)  # only regular files: never a FIFO, device, socket or folder
    except UnusableInput as exc:
        raise BadFile(exc.reason, exc.detail) from None
    with handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            if size and not handle.read(1):
                raise OSError("no data")
            handle.seek(0)
        except OSError as exc:
            raise BadFile("unreadable", getattr(exc, "strerror", None) or str(exc)) from None
        if size == 0:
            raise BadFile("empty", "file is empty (0 bytes)")
        yield handle


def decode_image(
    path: str,
    work_side: int = DEFAULT_WORK_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> DecodedImage:
    """Decode ``path`` to RGB whose longer side is at least ``work_side`` when the original is.

    The header is checked (format, size, pixel limit) before any pixel is read. Raises
    :class:`BadFile` for anything that cannot be used.
    """
    with open_image_file(path) as handle:
        return _decode(path, handle, work_side, max_pixels, min_side)


def decode_bytes(
    name: str,
    data: bytes,
    work_side: int = DEFAULT_WORK_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> DecodedImage:
    """Decode the bytes of an object or a shard member (``name``) as :func:`decode_image` decodes a file."""
    if not data:
        raise BadFile("empty", "file is empty (0 bytes)")
    return _decode(name, io.BytesIO(data), work_side, max_pixels, min_side)


def check_size(width: int, height: int, max_pixels: int, min_side: int) -> None:
    """Raise :class:`BadFile` for an image above ``max_pixels`` or with a side below ``min_side``."""
    if width * height > max_pixels:
        raise BadFile("too_large", f"{width}x{height} pixels exceeds max_pixels={max_pixels}")
    if min(width, height) < min_side:
        raise BadFile("too_small", f"{width}x{height} is below min_side={min_side}")


def _second_reader(path: str, handle: BinaryIO) -> BinaryIO:
    """Another reader of the same bytes (Pillow's PNG verification consumes one)."""
    return io.BytesIO(handle.getbuffer()) if isinstance(handle, io.BytesIO) else open_input_file(path)


@contextlib.contextmanager
def _pillow_limit_at_least(pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb limit raised to ``pixels`` (if lower) while held; restored after."""
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        if previous is not None:
            Image.MAX_IMAGE_PIXELS = max(previous, pixels)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _decode(path: str, handle: BinaryIO, work_side: int, max_pixels: int, min_side: int) -> DecodedImage:
    """Decode under Pillow's limit as set; an image it refuses is tried once more with ``max_pixels``."""
    try:
        return _decode_once(path, handle, work_side, max_pixels, min_side)
    except Image.DecompressionBombError:
        handle.seek(0)
        with _pillow_limit_at_least(max_pixels):
            try:
                return _decode_once(path, handle, work_side, max_pixels, min_side)
            except Image.DecompressionBombError as exc:  # more than twice max_pixels
                raise BadFile("too_large", f"exceeds max_pixels={max_pixels}: {exc}") from None


def _decode_once(path: str, handle: BinaryIO, work_side: int, max_pixels: int, min_side: int) -> DecodedImage:
    try:
        img = Image.open(handle)
    except UnidentifiedImageError:
        raise BadFile("not_an_image", "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadFile("corrupt", f"cannot read header: {exc}") from None
    fmt = img.format or "unknown"
    if fmt not in SUPPORTED_FORMATS:
        raise BadFile("unsupported_format", f"format {fmt} is not supported")
    width, height = img.size
    check_size(width, height, max_pixels, min_side)
    mode = img.mode
    try:
        if fmt == "PNG":
            with _second_reader(path, handle) as again:
                Image.open(again).verify()
        if fmt in ("JPEG", "MPO") and max(width, height) > work_side:
            scale = work_side / max(width, height)
            img.draft(None, (max(1, round(width * scale)), max(1, round(height * scale))))
        img.load()
        orientation = img.getexif().get(0x0112, 1)
        img = ImageOps.exif_transpose(img)
        rgb = to_rgb(img)
    except (BadFile, Image.DecompressionBombError):
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt file
        raise BadFile("corrupt", f"{type(exc).__name__}: {exc}") from None
    if orientation in ROTATING_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(rgb, width, height, mode, fmt, len(Image.new(mode, (1, 1)).getbands()))


def to_rgb(img: Image.Image) -> Image.Image:
    """Normalize any Pillow mode to 8-bit RGB."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(img)), "L").convert("RGB")
    if "A" in mode or "a" in mode or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise BadFile("unsupported_format", f"mode {mode} cannot be converted: {exc}") from None


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale 16-bit, 32-bit integer or float pixel values to 0..255."""
    arr = values.astype(np.float64)
    if values.dtype.kind == "f":
        peak = 1.0 if arr.size and np.nanmax(arr) <= 1.0 else 255.0
        arr = np.nan_to_num(arr) * (255.0 / peak)
    elif values.dtype.itemsize >= 2 and arr.size and arr.max() > 255:
        arr = arr / 257.0 if arr.max() <= 65535 else arr * (255.0 / arr.max())
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
