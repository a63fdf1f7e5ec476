"""cleanvision-style image issues, scored from the image statistics table.

Each issue has a score column and a threshold; :data:`ISSUES` holds the defaults in one place:

- ``odd_aspect_ratio``: ``aspect_ratio`` = shorter side / longer side, an issue below 0.5.
- ``odd_size``: ``size_ratio`` = sqrt(pixels) / the dataset's median sqrt(pixels), an issue above
  10 or below 1/10.
- ``grayscale``: ``colorfulness`` = mean spread of R, G, B (0..255), an issue below 2.
- ``low_information``: ``entropy`` of the luminance histogram in bits (0..8), an issue below 2.4.
- ``near_constant``: ``stdv`` of luminance (0..255), an issue below 2.

``entropy`` and ``colorfulness`` are columns of the statistics table; in a work_dir scanned before
they existed they are null, and then a single-channel file is grayscale and low information is
not judged.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from dup_pipeline.core.atomic import write_parquet
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.workdir import WorkDir

IMAGE_ISSUES_FILE = "image_issues.parquet"
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class IssueSpec:
    """An image has the issue when its ``score`` column is below ``threshold``; for a ``two_sided``
    ratio, when it is above ``threshold`` or below ``1 / threshold``."""

    score: str
    threshold: float
    title: str
    description: str
    two_sided: bool = False


ISSUES: dict[str, IssueSpec] = {
    "odd_aspect_ratio": IssueSpec("aspect_ratio", 0.5, "Odd aspect ratio",
                                  "Shorter side / longer side below {t:g} (very wide or very tall images)."),
    "odd_size": IssueSpec("size_ratio", 10.0, "Odd size",
                          "Linear size more than {t:g}x larger or smaller than the dataset's median image.",
                          two_sided=True),
    "grayscale": IssueSpec("colorfulness", 2.0, "Grayscale",
                           "No colour: mean spread of the R, G, B values below {t:g} (of 255)."),
    "low_information": IssueSpec("entropy", 2.4, "Low information",
                                 "Entropy of the grey levels below {t:g} bits (of 8): few tones, little content."),
    "near_constant": IssueSpec("stdv", 2.0, "Near-constant",
                               "Luminance standard deviation below {t:g} (of 255): an almost uniform image."),
}


def issue_thresholds(value: str | Mapping[str, float] | None = None) -> dict[str, float]:
    """Every issue's threshold: the defaults, overridden by ``value`` (a mapping or ``"name=value,..."``).

    Raises ``ConfigError`` naming the unknown issue or the bad value.
    """
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in value.replace(" ", "").split(",") if p]
        if any(len(p) != 2 for p in pairs):
            raise ConfigError(f"image_issue_thresholds must be 'name=value,...' with names {', '.join(ISSUES)}, "
                              f"got {value!r}")
        value = dict(pairs)  # type: ignore[arg-type]
    chosen = {name: spec.threshold for name, spec in ISSUES.items()}
    for name, raw in (value or {}).items():
        if name not in ISSUES:
            raise ConfigError(f"image_issue_thresholds: unknown issue {name!r}; issues: {', '.join(ISSUES)}")
        try:
            number = float(raw)
        except (TypeError, ValueError):
            number = math.nan
        spec = ISSUES[name]
        if not math.isfinite(number) or number <= 0 or (spec.two_sided and number <= 1):
            bound = "> 1" if spec.two_sided else "> 0"
            raise ConfigError(f"image_issue_thresholds: {name} must be a number {bound}, got {raw!r}")
        chosen[name] = number
    return chosen


def image_issues(stats: pl.DataFrame, thresholds: Mapping[str, float] | None = None) -> pl.DataFrame:
    """One row per image of ``stats``: ``index, filename``, each score column, one boolean column per
    issue and ``issues`` (the names of the issues found)."""
    limits = issue_thresholds(thresholds)
    nulls = [pl.lit(None, pl.Float64).alias(c) for c in ("entropy", "colorfulness") if c not in stats.columns]
    side = (pl.col("width").cast(pl.Float64) * pl.col("height").cast(pl.Float64)).sqrt()
    scored = stats.with_columns(*nulls).with_columns(
        aspect_ratio=pl.min_horizontal("width", "height").cast(pl.Float64)
        / pl.max_horizontal("width", "height").cast(pl.Float64),
        size_ratio=side / side.median(),
        gray_file=pl.col("mode").is_in(GRAY_MODES) if "mode" in stats.columns else pl.lit(False),
    )
    flags = {}
    for name, spec in ISSUES.items():
        t, score = limits[name], pl.col(spec.score).fill_nan(None)  # NaN is unknown, not an issue
        flag = (score > t) | (score < 1 / t) if spec.two_sided else score < t
        if name == "grayscale":
            flag = pl.when(score.is_null()).then(pl.col("gray_file")).otherwise(flag)
        flags[name] = flag.fill_null(False)
    scores = list(dict.fromkeys(spec.score for spec in ISSUES.values()))
    return (
        scored.select("index", "filename", *scores, **flags)
        .with_columns(issues=pl.concat_list(pl.when(pl.col(n)).then(pl.lit(n)) for n in ISSUES).list.drop_nulls())
    )


def issue_counts(issues: pl.DataFrame) -> dict[str, int]:
    """Images per issue, in :data:`ISSUES` order."""
    return {name: int(issues[name].sum()) for name in ISSUES}


def write_image_issues(work: WorkDir, stats: pl.DataFrame, thresholds: Mapping[str, float] | None = None,
                       ) -> pl.DataFrame:
    """``image_issues.parquet`` in the work_dir (see :func:`image_issues`)."""
    issues = image_issues(stats, thresholds)
    write_parquet(issues, work.root / IMAGE_ISSUES_FILE)
    return issues
