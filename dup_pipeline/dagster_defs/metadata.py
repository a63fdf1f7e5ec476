"""Helpers that turn core results into Dagster metadata shown in the UI."""

from pathlib import Path

import dagster as dg
import polars as pl

from dup_pipeline.core.stages import StageResult

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


def result_metadata(result: StageResult) -> dict[str, object]:
    """Dagster metadata of a stage's result: numbers as numbers, tables as Markdown, files as paths."""
    metadata: dict[str, object] = {}
    for key, value in result.metrics.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, dict) else value
    if result.preview is not None:
        metadata["preview"] = markdown_table(result.preview)
    if result.markdown is not None:
        metadata["summary"] = dg.MetadataValue.md(result.markdown)
    for role, path in result.paths.items():
        metadata[role] = dg.MetadataValue.path(str(path))
    metadata["reused"] = result.reused
    if result.skipped:
        metadata["skipped"] = result.skipped
    return metadata


def materialize_results(results: list[StageResult], keyed: bool) -> list[dg.MaterializeResult]:
    """One ``MaterializeResult`` per output (``keyed``: with its asset key, for multi-assets)."""
    return [dg.MaterializeResult(asset_key=[*r.asset.split("/")] if keyed else None,
                                 metadata=result_metadata(r), data_version=dg.DataVersion(r.fingerprint))
            for r in results]
