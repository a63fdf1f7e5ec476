"""Rendering self-contained HTML pages (Jinja2, autoescaped) and writing them atomically."""

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import escape

from dup_pipeline.core.atomic import write_text
from dup_pipeline.core.report.data import WorkTables
from dup_pipeline.core.workdir import WorkDir

TEMPLATES = Path(__file__).parent / "templates"
_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


_ENV.filters["num"] = _number


@dataclass(frozen=True)
class NavLink:
    """A link of the page header's navigation bar."""

    label: str
    href: str
    key: str
    current: bool = False


@dataclass(frozen=True)
class Section:
    """What one gallery page shows, before rendering."""

    key: str
    title: str
    description: str
    template: str
    items: list
    total: int
    computed: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gallery:
    """A gallery page written to ``path``: ``count`` of ``total`` rows shown."""

    path: Path
    title: str
    count: int
    total: int
    computed: bool = True
    note: str = ""
    items: list = field(default_factory=list, repr=False, compare=False)
    html: str = field(default="", repr=False, compare=False)

    def _repr_html_(self) -> str:
        return inline_frame(self.html)


def inline_frame(html: str, height: int = 720) -> str:
    """``html`` isolated in an ``<iframe srcdoc>`` (so its CSS cannot restyle a notebook)."""
    return (f'<iframe srcdoc="{escape(html)}" style="width:100%;height:{height}px;border:1px solid #d0d5dd;'
            f'border-radius:6px"></iframe>')


def resolve_save_path(save_path: str | os.PathLike[str] | None, work: WorkDir, name: str) -> Path:
    """fastdup's convention: None -> ``<work_dir>/galleries/<name>.html``; a folder ->
    ``<folder>/<name>.html``; a path ending in ``.html`` -> that file."""
    if save_path is None:
        return work.root / "galleries" / f"{name}.html"
    path = Path(save_path).absolute()
    return path if path.suffix.lower() in (".html", ".htm") else path / f"{name}.html"


def page_context(tables: WorkTables, nav: list[NavLink] | tuple = (), dataset_name: str | None = None,
                 ) -> dict[str, Any]:
    """The header shared by every page: dataset, folders, date and navigation."""
    root = tables.root
    return {
        "dataset": dataset_name or os.path.basename(root.rstrip(os.sep)) or tables.work.root.name,
        "root": root or "–",
        "work_dir": str(tables.work.root),
        "generated": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nav": list(nav),
    }


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>.html.j2``."""
    return _ENV.get_template(f"{template}.html.j2").render(**context)


def publish(section: Section, path: Path, tables: WorkTables, nav: list[NavLink] | tuple = (),
            dataset_name: str | None = None) -> Gallery:
    """Render ``section`` into ``path`` (atomically) and describe the result."""
    html = render(
        section.template, **page_context(tables, nav, dataset_name), key=section.key, title=section.title,
        description=section.description, items=section.items, total=section.total, computed=section.computed,
        note=section.note, **section.extra,
    )
    write_text(html, path)
    return Gallery(path, section.title, len(section.items), section.total, section.computed, section.note,
                   section.items, html)
