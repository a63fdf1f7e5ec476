"""What the pages show: plain records that the templates render."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """One image on a page: thumbnail source, names and what is known about it."""

    src: str
    name: str
    path: str
    dims: str = ""
    size: str = ""
    label: str | None = None
    ok: bool = True
    extra: str | None = None  # more text under the image (fastdup's get_extra_col_func)

    @property
    def base(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        return self.name.rsplit("/", 1)[0] + "/" if "/" in self.name else ""


@dataclass(frozen=True)
class Item:
    """An image with a value shown with it (a statistic or a similarity)."""

    tile: Tile
    value: float | None = None


@dataclass(frozen=True)
class Badge:
    """A short flag on a card; ``kind`` is ``same`` (identical), ``warn`` or ``info``."""

    text: str
    kind: str = "info"


@dataclass(frozen=True)
class Pair:
    """Two images side by side with their similarity."""

    left: Tile
    right: Tile
    score: float
    badges: tuple[Badge, ...] = ()


@dataclass(frozen=True)
class Group:
    """A set of images (a component, or a query image and its neighbours)."""

    title: str
    members: list[Item]
    more: int = 0
    facts: tuple[tuple[str, str], ...] = ()
    badges: tuple[Badge, ...] = ()
    head: Tile | None = None
    head_caption: str = "query image"


@dataclass(frozen=True)
class BadRow:
    """One unreadable or rejected file."""

    name: str
    path: str
    reason: str
    detail: str
    size: str


def human_size(num_bytes: int | None) -> str:
    """``1536`` -> ``'1.5 KB'``."""
    if num_bytes is None:
        return ""
    units = ("B", "KB", "MB", "GB", "TB")
    size, exp = float(num_bytes), 0
    while size >= 1024 and exp < len(units) - 1:
        size, exp = size / 1024, exp + 1
    return f"{int(size)} B" if exp == 0 else f"{size:.1f} {units[exp]}"
