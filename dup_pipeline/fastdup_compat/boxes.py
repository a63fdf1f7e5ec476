"""Object-detection annotations (several boxes per file): each box is cropped to an image file under
``work_dir/crops/`` and analysed as an instance, as fastdup does.

``crops.csv`` maps each crop back to its image and box: ``crop_filename, filename, col_x, row_y,
width, height, label, split``. A box of an unreadable image, or one that does not overlap its
image, is left out and listed in ``crops.csv`` with ``error_code``.
"""

import os
from pathlib import Path

import pandas as pd
import polars as pl

from dup_pipeline.core.atomic import atomic_path, write_csv
from dup_pipeline.core.decode import BadFile, decode_image
from dup_pipeline.core.embed.crop import CropBox
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.workdir import WorkDir

BOX_COLUMNS = ("col_x", "row_y", "width", "height")
ALIASES = {"bbox_x": "col_x", "bbox_y": "row_y", "bbox_w": "width", "bbox_h": "height"}
CROPS = "crops"
CROPS_CSV = "crops.csv"


def box_columns(df: pd.DataFrame) -> pd.DataFrame | None:
    """``df`` with fastdup's box columns (``bbox_*`` renamed), or None when it has no box columns."""
    df = df.rename(columns={k: v for k, v in ALIASES.items() if k in df.columns})
    present = [c for c in BOX_COLUMNS if c in df.columns]
    if not present:
        return None
    if len(present) < len(BOX_COLUMNS):
        raise ConfigError(f"bounding-box annotations need columns {list(BOX_COLUMNS)}; found only {present}")
    values = df[list(BOX_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        raise ConfigError(f"bounding-box columns {list(BOX_COLUMNS)} must be numbers (pixels)")
    return df.assign(**{c: values[c].round().astype(int) for c in BOX_COLUMNS})


def crop_boxes(boxes: pd.DataFrame, work: WorkDir) -> tuple[list[str], pd.DataFrame]:
    """Write one JPEG per box (each image decoded once); ``(crop files, labels of the crops)``.

    ``boxes`` has absolute ``filename`` and the box columns (+ ``label``, ``split``).
    """
    folder = work.root / CROPS
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for filename, group in boxes.groupby("filename", sort=True):
        try:
            decoded = decode_image(str(filename))
            error = None
        except BadFile as bad:
            decoded, error = None, bad.reason
        for number, box in group.iterrows():
            crop_path = folder / f"{number}_{Path(str(filename)).stem}.jpg"
            reason = error or _save_crop(decoded, box, crop_path)
            rows.append({"crop_filename": str(crop_path), "filename": filename,
                         **{c: int(box[c]) for c in BOX_COLUMNS},
                         "label": box.get("label"), "split": box.get("split"), "error_code": reason})
    table = pd.DataFrame(rows)
    write_csv(pl.from_pandas(table.astype({"label": str, "split": str, "error_code": str}).replace("None", None)),
              work.root / CROPS_CSV)
    good = table[table["error_code"].isna()]
    labels = good[["crop_filename"] + [c for c in ("label", "split") if c in boxes.columns]].rename(
        columns={"crop_filename": "filename"})
    return good["crop_filename"].tolist(), labels


def _save_crop(decoded, box: pd.Series, path: Path) -> str | None:
    """Save the box's pixels; the reason it cannot be cropped otherwise."""
    if box["width"] < 1 or box["height"] < 1 or box["col_x"] >= decoded.width or box["row_y"] >= decoded.height \
            or box["col_x"] + box["width"] <= 0 or box["row_y"] + box["height"] <= 0:
        return "box_outside_image"
    left, top = max(0, int(box["col_x"])), max(0, int(box["row_y"]))
    crop = CropBox(row_y=top, col_x=left, height=int(box["row_y"] + box["height"]) - top,
                   width=int(box["col_x"] + box["width"]) - left).apply(decoded)
    with atomic_path(path) as tmp:
        crop.save(tmp, format="JPEG", quality=95)
    return None


def crop_names(work: WorkDir) -> pl.DataFrame | None:
    """``crop_filename, filename, col_x, row_y, width, height`` of an object-detection run, else None."""
    path = work.root / CROPS_CSV
    if not path.exists():
        return None
    return pl.read_csv(path, infer_schema_length=0).select(
        "crop_filename", "filename", *(pl.col(c).cast(pl.Int64) for c in BOX_COLUMNS))


def remove_crops(work: WorkDir) -> None:
    """Delete the crops and their table (``overwrite=True``)."""
    (work.root / CROPS_CSV).unlink(missing_ok=True)
    folder = work.root / CROPS
    if folder.is_dir():
        for crop in folder.glob("*.jpg"):
            crop.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            os.rmdir(folder)
