"""fastdup's ``annotations=`` and ``subset=``: which files to analyse and their labels.

fastdup's notebooks build file names as ``data_dir + name``: relative to the current directory.
A name is resolved against the current directory first, then against the input folder.
Object-detection annotations (box columns) are cropped by :mod:`dup_pipeline.fastdup_compat.boxes`.
"""

import os
from pathlib import Path
from typing import Any

import pandas as pd

from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.inputs import InputSpec
from dup_pipeline.fastdup_compat.boxes import BOX_COLUMNS, box_columns



def _resolve(name: str, input_dir: InputSpec) -> str:
    if os.path.isabs(name) or os.path.exists(name):
        return os.path.abspath(name)
    if isinstance(input_dir, (str, os.PathLike)) and Path(input_dir).is_dir() and (Path(input_dir) / name).exists():
        return os.path.abspath(Path(input_dir) / name)
    return os.path.abspath(name)


def _as_frame(annotations: Any) -> pd.DataFrame:
    if isinstance(annotations, pd.DataFrame):
        return annotations
    if isinstance(annotations, (list, tuple)):
        return pd.DataFrame({"filename": [str(a) for a in annotations]})
    if isinstance(annotations, (str, os.PathLike)):
        path = Path(annotations)
        if path.suffix.lower() != ".csv":
            raise ConfigError(f"annotations file must be a .csv with a 'filename' column (COCO .json is not "
                              f"supported), got {str(path)!r}")
        if not path.is_file():
            raise ConfigError(f"annotations file {str(path)!r} does not exist")
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    raise ConfigError(f"annotations must be a pandas DataFrame, a list of file names or a CSV path, "
                      f"got {type(annotations).__name__} (COCO dicts are not supported)")


def prepare_annotations(annotations: Any, input_dir: InputSpec, subset: list[str] | None = None,
                        ) -> tuple[InputSpec, pd.DataFrame | None, pd.DataFrame | None]:
    """``(files to analyse, labels, boxes)``: the input folder (or ``subset``), ``filename,label,split``
    rows, and object-detection boxes (``filename, col_x, row_y, width, height`` + label/split) or None.

    Annotations without ``label`` and ``split`` (or a list of names) choose the files to analyse, as
    in fastdup. Several rows for one file without box columns are ambiguous: :class:`ConfigError`.
    """
    source: InputSpec = input_dir
    if subset is not None:
        if not isinstance(subset, (list, tuple)) or not subset:
            raise ConfigError("subset must be a non-empty list of file names")
        source = [_resolve(str(f), input_dir) for f in subset]
    if annotations is None:
        return source, None, None
    df = _as_frame(annotations)
    if "filename" not in df.columns or df.empty:
        raise ConfigError(f"annotations need a non-empty 'filename' column; columns found: {list(df.columns)}")
    names = [_resolve(str(f), input_dir) for f in df["filename"]]
    boxes = box_columns(df)
    if boxes is not None:
        return sorted(set(names)), None, boxes.assign(filename=names)
    if df["filename"].duplicated().any():
        repeated = sorted(set(df.loc[df["filename"].duplicated(), "filename"].astype(str)))[:5]
        raise ConfigError(f"annotations list some files more than once (e.g. {repeated}) without box columns "
                          f"{list(BOX_COLUMNS)}: give one row per image, or one row per box with its box")
    if not {"label", "split"} & set(df.columns):
        return names, None, None
    labels = pd.DataFrame({"filename": names})
    for column in ("label", "split"):
        if column in df.columns:
            labels[column] = [None if pd.isna(v) else str(v) for v in df[column]]  # a missing label stays missing
    present = [c for c in ("label", "split") if c in labels.columns]
    return source, labels[labels[present].notna().any(axis=1)], None  # a row without label and split says nothing
