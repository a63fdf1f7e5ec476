"""Image labels: from a CSV/DataFrame (``filename,label[,split]``) or from folder names."""

import csv
import os
from pathlib import Path
from typing import Any

import polars as pl

from dup_pipeline.core.errors import LabelsError

LABELS_SCHEMA = {"index": pl.Int64, "filename": pl.String, "label": pl.String, "split": pl.String}
SPLIT_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation", "dev"})
MAX_LISTED = 10



def _as_polars(source: Any) -> pl.DataFrame:
    if isinstance(source, pl.DataFrame):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            problem = "is not a regular file (a folder, FIFO or device)" if path.exists() else "does not exist"
            raise LabelsError(f"labels file {str(path)!r} {problem}")
        return _read_csv(path)
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return pl.from_pandas(source.astype(str) if len(source) else source)
    raise LabelsError(f"labels must be a CSV path or a DataFrame, got {type(source).__name__}")


def _read_csv(path: Path) -> pl.DataFrame:
    """Read a labels CSV as text columns; anything that is not a table with a header and rows is a
    :class:`LabelsError` naming the file, the line and the problem."""
    rows: list[tuple[int, list[str]]] = []
    reader = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 0
        raise LabelsError(f"labels file {str(path)!r} is not valid CSV (line {line}: {exc}; "
                          "e.g. a quote that is never closed)") from None
    except UnicodeDecodeError as exc:
        raise LabelsError(f"labels file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise LabelsError(f"labels file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if not rows:
        raise LabelsError(f"labels file {str(path)!r} is empty: it needs a header (filename,label[,split]) and rows")
    (_, header), body = rows[0], rows[1:]
    header = [name.strip() for name in header]
    if not body:
        raise LabelsError(f"labels file {str(path)!r} has a header ({','.join(header)}) but no rows")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise LabelsError(f"labels file {str(path)!r} repeats the columns {repeated} in its header")
    ragged = [line for line, row in body if len(row) != len(header)]
    if ragged:
        raise LabelsError(f"labels file {str(path)!r}: {len(ragged)} rows do not have the header's {len(header)} "
                          f"fields, e.g. lines {ragged[:MAX_LISTED]}")
    return pl.DataFrame([[row[i] for _, row in body] for i in range(len(header))],
                        schema={name: pl.String for name in header}, orient="col")


def load_labels(source: Any, manifest: pl.DataFrame, input_root: str | os.PathLike[str] | None) -> pl.DataFrame:
    """Match labels to manifest rows; file names may be relative to ``input_root`` or absolute.

    Raises :class:`LabelsError` for a missing ``filename`` column or file names that are not
    among the input images (listed, never silently dropped). ``label`` and ``split`` are optional.
    """
    df = _as_polars(source)
    if df.is_empty():
        raise LabelsError(f"labels have no rows; columns found: {df.columns}")
    if "filename" not in df.columns:
        raise LabelsError(f"labels need a 'filename' column; columns found: {df.columns}")
    if "label" not in df.columns and "split" not in df.columns:
        raise LabelsError(f"labels need a 'label' and/or 'split' column; columns found: {df.columns}")
    if df["filename"].cast(pl.String).str.strip_chars().fill_null("").eq("").any():
        raise LabelsError("labels have rows with an empty 'filename'")
    base = Path.cwd()
    if input_root is not None and Path(input_root).is_dir():
        base = Path(input_root)
    elif input_root is not None and Path(input_root).is_file():  # a list file: names relative to its folder
        base = Path(input_root).parent
    resolved = [os.path.abspath(f if os.path.isabs(f) else base / f) for f in df["filename"].cast(pl.String)]
    df = df.with_columns(pl.Series("filename", resolved))
    duplicated = df.filter(pl.col("filename").is_duplicated())["filename"].unique().sort().to_list()
    if duplicated:
        raise LabelsError(f"{len(duplicated)} file names are labeled more than once, e.g. {duplicated[:MAX_LISTED]}")
    index = manifest.select("index", pl.col("path").alias("filename"))
    joined = df.join(index, on="filename", how="left")
    unknown = joined.filter(pl.col("index").is_null())["filename"].to_list()
    if unknown:
        raise LabelsError(
            f"{len(unknown)} labeled file names are not among the input images (relative names are resolved "
            f"against {str(base)!r}), e.g. {unknown[:MAX_LISTED]}"
        )
    return joined.select(
        "index", "filename",
        (pl.col("label").cast(pl.String) if "label" in df.columns else pl.lit(None, pl.String)).alias("label"),
        (pl.col("split").cast(pl.String) if "split" in df.columns else pl.lit(None, pl.String)).alias("split"),
    ).cast(LABELS_SCHEMA).sort("index")


def labels_from_folders(manifest: pl.DataFrame, input_root: str | os.PathLike[str]) -> pl.DataFrame:
    """``train/cat/x.jpg`` → label ``cat``, split ``train`` (split only for known split folder names)."""
    root = Path(input_root).absolute()
    rows = []
    for index, path in manifest.filter(~pl.col("missing")).select("index", "path").iter_rows():
        parts = Path(path).relative_to(root).parts if Path(path).is_relative_to(root) else Path(path).parts[-2:]
        folders = parts[:-1]
        label = folders[-1] if folders and folders[-1].lower() not in SPLIT_NAMES else None
        split = next((f for f in folders if f.lower() in SPLIT_NAMES), None)
        rows.append((index, path, label, split))
    return pl.DataFrame(rows, schema=LABELS_SCHEMA, orient="row")
