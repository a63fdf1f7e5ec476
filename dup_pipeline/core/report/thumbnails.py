"""Small JPEG thumbnails of image files, inlined as ``data:`` URIs or written beside a page, optionally
with boxes drawn on them."""

import base64
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from dup_pipeline.core.atomic import atomic_path
from dup_pipeline.core.decode import to_rgb
from dup_pipeline.core.inputs import open_input_file
from dup_pipeline.core.sources.catalog import SourceSettings
from dup_pipeline.core.sources.names import is_url, locate
from dup_pipeline.core.sources.reading import open_images

THUMB_SIDE = 180
_QUALITY = 82
BOX_COLOUR = (0, 255, 0)  # fastdup's
BOX_LINE = 3  # pixels of the thumbnail
Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in the (orientation-corrected) image's pixels
_SWAPPED = (5, 6, 7, 8)  # EXIF orientations that exchange width and height
_PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="180" height="135" viewBox="0 0 180 135">'
    '<rect width="180" height="135" fill="#eceff3"/>'
    '<path d="M70 45h40v45H70z" fill="none" stroke="#a0a8b4" stroke-width="3"/>'
    '<path d="M70 45l40 45M110 45L70 90" stroke="#c2410c" stroke-width="3"/>'
    '<text x="90" y="115" font-family="sans-serif" font-size="12" fill="#6b7280" '
    'text-anchor="middle">unreadable</text></svg>'
)
PLACEHOLDER_URI = "data:image/svg+xml;base64," + base64.b64encode(_PLACEHOLDER_SVG.encode()).decode()


@dataclass(frozen=True)
class Thumb:
    """A thumbnail (``jpeg`` is None when the file cannot be read) and the original's size."""

    jpeg: bytes | None
    width: int | None = None
    height: int | None = None
    file_size: int | None = None

    @property
    def uri(self) -> str:
        """The thumbnail as a ``data:image/jpeg;base64`` URI, or the placeholder."""
        if self.jpeg is None:
            return PLACEHOLDER_URI
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")


def _draw_boxes(img: Image.Image, boxes: tuple[Box, ...], full_width: int, full_height: int) -> Image.Image:
    """``boxes`` (in the full image's pixels) outlined on its thumbnail ``img``."""
    img = to_rgb(img)
    sx, sy = img.width / full_width, img.height / full_height
    pen = ImageDraw.Draw(img)
    for x1, y1, x2, y2 in boxes:
        left, right = sorted((round(x1 * sx), round(x2 * sx)))
        top, bottom = sorted((round(y1 * sy), round(y2 * sy)))
        pen.rectangle((left, top, max(left, right - 1), max(top, bottom - 1)), outline=BOX_COLOUR, width=BOX_LINE)
    return img


def _thumb(img: Image.Image, max_side: int, size: int | None, boxes: tuple[Box, ...]) -> Thumb:
    width, height = img.size
    upright = (height, width) if img.getexif().get(0x0112, 1) in _SWAPPED else (width, height)
    if img.format == "JPEG":
        img.draft("RGB", (max_side, max_side))  # DCT scaling to at least max_side; LANCZOS does the rest
    img = ImageOps.exif_transpose(img)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    if boxes:
        img = _draw_boxes(img, boxes, *upright)
    buf = io.BytesIO()
    to_rgb(img).save(buf, "JPEG", quality=_QUALITY, optimize=True)
    return Thumb(buf.getvalue(), width, height, size)


def _render(path: str, max_side: int, boxes: tuple[Box, ...]) -> Thumb:
    size = os.stat(path).st_size
    with open_input_file(path) as handle, Image.open(handle) as img:  # never a FIFO or device
        return _thumb(img, max_side, size, boxes)


_SOURCE_THUMBS: dict[tuple[str, int, tuple[Box, ...]], Thumb] = {}
_SOURCE_CACHE = 4096


def _is_source(name: str) -> bool:
    """An object, a shard member or a video frame: read through the source layer, not as a local file."""
    return is_url(name) or (not os.path.lexists(name) and locate(name).kind != "file")


def _render_sources(names: list[str], max_side: int, boxes: tuple[Box, ...] = ()) -> None:
    """Thumbnails of objects, members and frames, made now in one pass per shard or video
    (credentials from the store's usual environment)."""
    todo = [n for n in dict.fromkeys(names) if (n, max_side, boxes) not in _SOURCE_THUMBS]
    for name, img in open_images(todo, SourceSettings()):
        try:
            thumb = Thumb(None) if img is None else _thumb(img, max_side, None, boxes)
        except Exception:  # noqa: BLE001 - any unreadable, truncated or hostile image becomes a placeholder
            thumb = Thumb(None)
        _SOURCE_THUMBS[(name, max_side, boxes)] = thumb
        while len(_SOURCE_THUMBS) > _SOURCE_CACHE:
            del _SOURCE_THUMBS[next(iter(_SOURCE_THUMBS))]


@lru_cache(maxsize=4096)
def _cached(path: str, mtime_ns: int, size: int, max_side: int, boxes: tuple[Box, ...]) -> Thumb:
    try:
        return _render(path, max_side, boxes)
    except Exception:  # noqa: BLE001 - any unreadable, truncated or hostile file becomes a placeholder
        return Thumb(None, file_size=size)


def load_thumb(path: str | os.PathLike[str], max_side: int = THUMB_SIDE, boxes: tuple[Box, ...] = ()) -> Thumb:
    """The thumbnail of ``path`` with ``boxes`` outlined, scaled with it (cached per path, modification
    time, size and boxes; an object, shard member or video frame per name); never raises."""
    name, key = os.fspath(path), (os.fspath(path), max_side, tuple(boxes))
    if _is_source(name):
        if key not in _SOURCE_THUMBS:
            _render_sources([name], max_side, tuple(boxes))
        return _SOURCE_THUMBS.get(key, Thumb(None))
    try:
        st = os.stat(path)
    except OSError:
        return Thumb(None)
    return _cached(os.fspath(path), st.st_mtime_ns, st.st_size, max_side, tuple(boxes))


def thumbnail_uri(path: str | os.PathLike[str], max_side: int = THUMB_SIDE) -> str:
    """``path``'s thumbnail as an inline ``data:`` URI (a placeholder image when unreadable)."""
    return load_thumb(path, max_side).uri


def prefetch(paths: list[str], max_side: int = THUMB_SIDE, threads: int | None = None) -> None:
    """Render the thumbnails of ``paths`` in parallel (Pillow decodes without holding the GIL)."""
    unique = list(dict.fromkeys(paths))
    _render_sources([p for p in unique if _is_source(p)], max_side)
    unique = [p for p in unique if not _is_source(p)]
    if len(unique) > 1:
        with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(lambda p: load_thumb(p, max_side), unique))


def thumbnail_src(path: str | os.PathLike[str], save_dir: str | os.PathLike[str] | None = None,
                  max_side: int = THUMB_SIDE, boxes: tuple[Box, ...] = ()) -> str:
    """An ``<img src>`` for ``path`` (``boxes`` outlined): inline when ``save_dir`` is None, else
    ``thumbs/<hash>.jpg`` in it."""
    thumb = load_thumb(path, max_side, boxes)
    if save_dir is None or thumb.jpeg is None:
        return thumb.uri
    name = hashlib.sha1(thumb.jpeg).hexdigest()[:20] + ".jpg"
    target = Path(save_dir) / "thumbs" / name
    if not target.exists():
        with atomic_path(target) as tmp:
            tmp.write_bytes(thumb.jpeg)
    return f"thumbs/{name}"
