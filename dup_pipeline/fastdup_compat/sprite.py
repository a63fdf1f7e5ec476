"""fastdup's ``generate_sprite_image``: a grid of thumbnails in one PNG."""

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dup_pipeline.core.atomic import atomic_path
from dup_pipeline.core.decode import BadFile, decode_image
from dup_pipeline.core.errors import ConfigError

TILE = 100


def _label(get_label_func: Callable[[Any], Any] | list | dict | None, image: Any, i: int) -> Any:
    if callable(get_label_func):
        return get_label_func(image)
    if isinstance(get_label_func, dict):
        return get_label_func.get(image, "N/A")
    if isinstance(get_label_func, list):
        return get_label_func[i]
    return "N/A"


def generate_sprite_image(img_list: list, sample_size: int, log_dir: str | os.PathLike[str] | None,
                          get_label_func: Any = None, h: int = 0, w: int = 0, alternative_filename: str | None = None,
                          alternative_width: int | None = None, max_width: int | None = None,
                          **_: Any) -> tuple[str | np.ndarray, list]:
    """``(path of sprite.png, labels)`` (an RGB array when ``img_list`` holds arrays or ``log_dir`` is empty).

    Files that cannot be read are skipped with a message, like fastdup.
    """
    if not img_list:
        raise ConfigError("img_list must name at least one image")
    if not isinstance(sample_size, int) or sample_size < 1:
        raise ConfigError(f"sample_size must be a positive integer, got {sample_size!r}")
    height, width = h or TILE, w or TILE
    tiles, labels = [], []
    for i, item in enumerate(img_list[:sample_size]):
        try:
            img = decode_image(str(item)).image if isinstance(item, (str, os.PathLike)) else Image.fromarray(
                np.asarray(item, dtype=np.uint8))
        except BadFile as bad:
            print(f"Failed to load image {item}: {bad}")
            continue
        tiles.append(img.convert("RGB").resize((width, height)))
        labels.append(_label(get_label_func, item, i))
    count = len(tiles)
    per_row = alternative_width or max(1, int(1.4 * math.ceil(math.sqrt(max(count, 1)))))
    rows = max(1, math.ceil(count / per_row))
    sprite = Image.new("RGB", (width * per_row, height * rows), (255, 255, 255))
    for n, tile in enumerate(tiles):
        sprite.paste(tile, ((n % per_row) * width, (n // per_row) * height))
    if max_width:
        factor = max_width / sprite.width
        sprite = sprite.resize((max(1, int(sprite.width * factor)), max(1, int(sprite.height * factor))))
    if not isinstance(img_list[0], (str, os.PathLike)) or not (alternative_filename or log_dir):
        return np.asarray(sprite), labels
    path = Path(alternative_filename) if alternative_filename else Path(log_dir) / "sprite.png"
    with atomic_path(path) as tmp:
        sprite.save(tmp, format="PNG")
    return str(path), labels
