"""Helpers that turn core results into Dagster metadata shown in the UI."""

from pathlib import Path

import dagster as dg
import polars as pl

PREVIEW_ROWS = 10


def _cell(value: object) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pl.DataFrame, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first ``rows`` rows of ``df`` as a Markdown table."""
    head = df.head(rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in head.iter_rows()]
    if df.height > rows:
        lines.append(f"\n… {df.height - rows} more rows")
    return dg.MetadataValue.md("\n".join(lines))


def file_metadata(path: Path) -> dict[str, dg.MetadataValue]:
    """The written file's path (shown as a path in the UI)."""
    return {"path": dg.MetadataValue.path(str(path))}
