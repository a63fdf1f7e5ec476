"""fastdup's ``fd.summary()``: the run's findings as a list of sentences (printed when ``verbose``)."""

import pandas as pd

BAR = 88 * "#"


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.2f}%" if total else "0.00%"


def summary_sentences(total: int, invalid: int, components: tuple[pd.DataFrame, pd.DataFrame] | None,
                      thresholds: tuple[float, float], outliers: pd.DataFrame | None, lower_threshold: float,
                      stats: pd.DataFrame | None, blur_threshold: float, brightness_threshold: float,
                      darkness_threshold: float, noun: str = "images") -> list[str]:
    """fastdup's sentences: images (``noun``: objects for boxes), valid/invalid, similarity clusters,
    outliers, blur/bright/dark."""
    valid = total - invalid
    lines = [f"Dataset contains {total} {noun}",
             f"Valid {noun} are {_pct(valid, total)} ({valid:,d}) of the data, "
             f"invalid are {_pct(invalid, total)} ({invalid:,d}) of the data"]
    if invalid:
        lines.append("For a detailed analysis, use `.invalid_instances()`.\n")
    if components is not None and len(components[1]):
        cc, info = components
        in_clusters, largest = len(cc), int(info["count"].max())
        lines += [f"Similarity:  {_pct(in_clusters, total)} ({in_clusters:,d}) belong to {len(info)} similarity "
                  f"clusters (components).",
                  f"{_pct(total - in_clusters, total)} ({total - in_clusters:,d}) images do not belong to any "
                  f"similarity cluster.",
                  f"Largest cluster has {largest:,d} ({_pct(largest, total)}) images.",
                  f"For a detailed analysis, use `.connected_components()`\n(similarity threshold used is "
                  f"{thresholds[0]}, connected component threshold used is {thresholds[1]}).\n"]
    if outliers is not None:
        lines += [f"Outliers: {_pct(len(outliers), total)} ({len(outliers):,d}) of images are possible outliers, "
                  f"and fall in the bottom {100 * lower_threshold:.2f}% of similarity values.",
                  "For a detailed list of outliers, use `.outliers()`.\n"]
    if stats is not None and len(stats):
        blurry = int((stats["blur"] < blur_threshold).sum())
        bright = int((stats["mean"] > brightness_threshold).sum())
        dark = int((stats["mean"] < darkness_threshold).sum())
        lines += [f"Blur: found {_pct(blurry, total)} of images ({blurry:,d}) that are blurry.",
                  f"Brightness: found {_pct(bright, total)} of images ({bright:,d}) that are bright.",
                  f"Darkness: found {_pct(dark, total)} of images ({dark:,d}) that are dark.",
                  "For more information, use `.img_stats()`.\n"]
    return lines


def print_summary(lines: list[str]) -> None:
    print("\n", BAR)
    print("\nDataset Analysis Summary: \n")
    for line in lines:
        print(f"    {line}")
