"""Decode what :func:`catalog.iter_payloads` read, as :func:`decode.decode_image` decodes a file."""

import io
from collections.abc import Iterable, Iterator

from PIL import Image

from dup_pipeline.core.decode import BadFile, DecodedImage, check_size, decode_bytes, decode_image
from dup_pipeline.core.inputs import open_input_file
from dup_pipeline.core.sources.catalog import Payload, SourceSettings, iter_payloads

FRAME_FORMAT = "VIDEO_FRAME"


def decode_payload(payload: Payload, max_pixels: int, min_side: int) -> DecodedImage:
    """An 8-bit RGB image of a local file, an object's or member's bytes, or a video frame.

    Raises :class:`BadFile` for anything that cannot be used, the payload's own error included.
    """
    if payload.error is not None:
        raise BadFile(*payload.error)
    if payload.path is not None:
        return decode_image(payload.path, max_pixels=max_pixels, min_side=min_side)
    if payload.data is not None:
        return decode_bytes(payload.name, payload.data, max_pixels=max_pixels, min_side=min_side)
    width, height = payload.frame_size or payload.frame.size
    check_size(width, height, max_pixels=max_pixels, min_side=min_side)
    return DecodedImage(payload.frame.convert("RGB"), width, height, "RGB", FRAME_FORMAT, 3)


def open_images(names: Iterable[str], settings: SourceSettings) -> Iterator[tuple[str, Image.Image | None]]:
    """Each name's image opened lazily (Pillow; a local path only if it is a regular file) or its
    decoded frame; None when it cannot be read.

    Reads as :func:`catalog.iter_payloads` does: one pass per shard or video.
    """
    for payload in iter_payloads(names, settings):
        yield payload.name, _image(payload)


def _image(payload: Payload) -> Image.Image | None:
    if payload.error is not None:
        return None
    if payload.frame is not None:
        return payload.frame
    try:
        return Image.open(open_input_file(payload.path) if payload.path else io.BytesIO(payload.data))
    except Exception:  # noqa: BLE001 - an unreadable image is shown as unreadable, never a crash
        return None
