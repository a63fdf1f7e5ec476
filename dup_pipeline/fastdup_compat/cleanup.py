"""fastdup's clean-up helpers: components as lists of files, and deleting all but one image of each."""

import os
from typing import Any

import pandas as pd

from dup_pipeline.core.errors import ConfigError

GROUP_BY = ("visual", "label")
HOW = ("one", "all")


def group_components(cc: pd.DataFrame, stats: pd.DataFrame | None, sort_by: str = "comp_size",
                     ascending: bool = True, metric: str | None = None, group_by: str = "visual") -> pd.DataFrame:
    """fastdup's ``connected_components_grouped``: one row per component of 2+ images.

    Columns ``files, component_id, files_ids, distance`` (the component's lowest edge similarity),
    ``label`` (list, labelled runs), ``len`` and the component's mean ``metric`` when given.
    ``group_by='label'`` groups the images in components by label instead.
    """
    if group_by not in GROUP_BY:
        raise ConfigError(f"group_by must be one of {GROUP_BY}, got {group_by!r}")
    if group_by == "label" and "label" not in cc.columns:
        raise ConfigError("group_by='label' needs a labelled run (run(annotations=...) with a 'label' column)")
    if metric is not None:
        if stats is None or metric not in stats.columns:
            raise ConfigError(f"metric must be an img_stats() column, got {metric!r}")
        cc = cc.merge(stats[["index", metric]], on="index", how="left")
    key = "component_id" if group_by == "visual" else "label"
    cc = cc.sort_values("index")
    grouped = cc.groupby(key, sort=True)
    out = pd.DataFrame({"files": grouped["filename"].apply(list), "files_ids": grouped["index"].apply(list),
                        "distance": grouped["min_distance"].min()})
    if group_by == "visual":
        out.insert(1, "component_id", out.index.to_numpy())
        if "label" in cc.columns:
            out["label"] = grouped["label"].apply(list)
    else:
        out.insert(1, "component_id", grouped["component_id"].apply(list))
    out["len"] = out["files"].apply(len)
    if metric is not None:
        out[metric] = grouped[metric].mean()
    out = out[out["len"] >= 2].reset_index(drop=group_by == "visual")
    column = "len" if sort_by == "comp_size" else sort_by
    if column not in out.columns:
        raise ConfigError(f"sort_by must be 'comp_size' or one of {list(out.columns)}, got {sort_by!r}")
    return out.sort_values(column, ascending=ascending, kind="stable").reset_index(drop=True)


def find_top_components(work_dir: str | os.PathLike[str], group_by: str = "visual", slice: Any = None,
                        threshold: float | None = None, metric: str | None = None, descending: bool = True,
                        min_items: int | None = None, max_items: int | None = None, **_: Any) -> pd.DataFrame:
    """fastdup's ``find_top_components``: the largest components of ``work_dir``, one row each."""
    from dup_pipeline.fastdup_compat.controller import Fastdup

    fd = Fastdup(work_dir)
    cc, _ = fd.connected_components()
    if slice is not None:
        if "label" not in cc.columns:
            raise ConfigError("slice= needs a labelled run")
        cc = cc[cc["label"].isin([slice] if isinstance(slice, str) else list(slice))]
    top = group_components(cc, fd.img_stats() if metric else None, "comp_size", not descending, metric, group_by)
    if threshold is not None:
        top = top[top["distance"] >= threshold]
    if min_items is not None:
        top = top[top["len"] >= min_items]
    if max_items is not None:
        top = top[top["len"] <= max_items]
    return top.reset_index(drop=True)


def delete_components(top_components: pd.DataFrame, to_delete: list[int] | None = None,
                      min_distance: float = 0.98, how: str = "one", dry_run: bool = True,
                      verbose: bool = True) -> list[str]:
    """Delete the duplicates of each component of ``top_components``; returns the files (to be) deleted.

    ``how='one'`` keeps the component's first file, ``'all'`` deletes every file. Only components whose
    lowest similarity is at least ``min_distance`` are touched. ``dry_run`` prints ``rm -f`` lines instead.
    """
    if not isinstance(top_components, pd.DataFrame) or not {"files", "component_id", "len"} <= set(
            top_components.columns):
        raise ConfigError("top_components must be find_top_components()'s DataFrame (files, component_id, len)")
    if how not in HOW:
        raise ConfigError(f"how must be one of {HOW}, got {how!r}")
    if to_delete is not None:
        top_components = top_components[top_components["component_id"].isin(to_delete)]
    if "distance" in top_components.columns:
        top_components = top_components[top_components["distance"] >= min_distance]
    doomed = [f for files in top_components["files"] if len(files) >= 2 for f in (files[1:] if how == "one" else files)]
    for path in doomed:
        if dry_run:
            if verbose:
                print(f"rm -f {path}")
        else:
            os.unlink(path)
    if not dry_run and verbose:
        print(f"total deleted {len(doomed)} files")
    return doomed


def remove_duplicates(input_dir: str | os.PathLike[str], work_dir: str | os.PathLike[str] | None = None,
                      distance: float = 0.96, dry_run: bool = False, license: str = "") -> list[str] | int:
    """fastdup's one-call clean-up: keep one image of each group similar at ``distance`` or more."""
    from dup_pipeline.fastdup_compat.controller import run

    work_dir = work_dir or "work_dir"
    if run(input_dir, work_dir, ccthreshold=distance) != 0:
        return 1
    top = find_top_components(work_dir)
    if top.empty:
        print("No components found")
        return []
    return delete_components(top, min_distance=distance, dry_run=dry_run)
