"""The HTML report: an overview page linking every gallery, with summary counts and previews."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from dup_pipeline.core.atomic import write_text
from dup_pipeline.core.image_issues import ISSUES
from dup_pipeline.core.manifest import exact_duplicate_groups
from dup_pipeline.core.report import galleries as g
from dup_pipeline.core.report.data import WorkTables
from dup_pipeline.core.report.histogram import histogram_svg
from dup_pipeline.core.report.render import (
    Gallery,
    NavLink,
    inline_frame,
    page_context,
    render,
)
from dup_pipeline.core.tables import bad_reason_counts
from dup_pipeline.core.workdir import WorkDir

TABLE_ROWS = 500
PAGES = (  # key (the page is <key>.html), navigation label, gallery function, its options
    ("duplicates", "Duplicates", g.duplicates_gallery, {}),
    ("outliers", "Outliers", g.outliers_gallery, {}),
    ("components", "Groups", g.component_gallery, {}),
    ("similarity", "Similar", g.similarity_gallery, {}),
    ("dark", "Dark", g.stats_gallery, {"metric": "dark"}),
    ("bright", "Bright", g.stats_gallery, {"metric": "bright"}),
    ("blur", "Blurry", g.stats_gallery, {"metric": "blur"}),
    ("odd_aspect_ratio", "Aspect", g.image_issues_gallery, {"issue": "odd_aspect_ratio"}),
    ("odd_size", "Size", g.image_issues_gallery, {"issue": "odd_size"}),
    ("grayscale", "Gray", g.image_issues_gallery, {"issue": "grayscale"}),
    ("low_information", "Low info", g.image_issues_gallery, {"issue": "low_information"}),
    ("near_constant", "Constant", g.image_issues_gallery, {"issue": "near_constant"}),
    ("mislabels", "Labels", g.label_gallery, {}),
    ("bad_files", "Bad files", g.bad_files_gallery, {}),
    ("leakage", "Leakage", g.leakage_gallery, {}),
)

@dataclass(frozen=True)
class Summary:
    """Dataset-wide counts; None where the table was not computed."""

    files: int | None = None
    good: int | None = None
    bad: int | None = None
    bad_reasons: dict[str, int] = field(default_factory=dict)
    duplicate_pairs: int | None = None
    duplicate_images: int | None = None
    identical_files: int | None = None
    outliers: int | None = None
    components: int | None = None
    component_images: int | None = None
    leakage_pairs: int | None = None
    leakage_images: int | None = None
    wrong_labels: int | None = None
    ambiguous_labels: int | None = None


@dataclass(frozen=True)
class Report:
    """The overview page ``index_path`` and the galleries beside it."""

    index_path: Path
    sections: dict[str, Gallery]
    summary: Summary
    html: str = field(default="", repr=False, compare=False)

    def _repr_html_(self) -> str:
        return inline_frame(self.html)


def summarize(t: WorkTables) -> Summary:
    """Counts for the overview page, read from the work_dir's tables."""
    w = t.work
    manifest, stats, bad = t.table(w.manifest), t.table(w.image_stats_parquet), t.table(w.bad_files_parquet)
    sim, out = t.table(w.similarity_parquet), t.table(w.outliers_parquet)
    cc, issues = t.table(w.components_parquet), t.table(w.label_issues_parquet)
    found = [df for df in (t.table(w.leakage_csv), t.table(w.cross_similarity_parquet)) if df is not None]
    cross = pl.concat([df.select("from", "to").cast(pl.Int64) for df in found]) if found else None
    files = identical = None
    if manifest is not None:
        files = manifest.filter(~pl.col("missing")).height
        identical = int(exact_duplicate_groups(manifest)["count"].sum())
    elif stats is not None and bad is not None:
        files = stats.height + bad.height
    groups = cc.filter(pl.col("count") > 1) if cc is not None else None
    return Summary(
        files=files, good=stats.height if stats is not None else None,
        bad=bad.height if bad is not None else None,
        bad_reasons=bad_reason_counts(bad) if bad is not None else {},
        duplicate_pairs=sim.height if sim is not None else None,
        duplicate_images=pl.concat([sim["from"], sim["to"]]).n_unique() if sim is not None else None,
        identical_files=identical,
        outliers=out.height if out is not None else None,
        components=groups["component_id"].n_unique() if groups is not None else None,
        component_images=groups.height if groups is not None else None,
        leakage_pairs=cross.height if cross is not None else None,
        leakage_images=cross["from"].n_unique() if cross is not None else None,
        wrong_labels=int((issues["status"] == "wrong").sum()) if issues is not None else None,
        ambiguous_labels=int((issues["status"] == "ambiguous").sum()) if issues is not None else None,
    )


def _nav(current: str) -> list[NavLink]:
    return [NavLink("Overview", "index.html", "overview", current == "overview"),
            *(NavLink(label, f"{key}.html", key, key == current) for key, label, _, _ in PAGES)]


def build_report(work: WorkDir | str | os.PathLike[str], save_dir: str | os.PathLike[str] | None = None,
                 labels: pl.DataFrame | None = None, num_images: int = 20, dataset_name: str | None = None,
                 inline: bool = True, cutoffs: Mapping[str, float] | None = None) -> Report:
    """Write ``index.html`` and every gallery into ``save_dir`` (default ``<work_dir>/report``).

    ``cutoffs``: the run's ``threshold`` and ``ccthreshold``, marked on the histogram of
    nearest-neighbour similarities (not marked without them)."""
    work = work if isinstance(work, WorkDir) else WorkDir(work)
    folder = Path(save_dir).absolute() if save_dir is not None else work.root / "report"
    common = {"labels": labels, "inline": inline, "dataset_name": dataset_name}
    rows = {"bad_files": max(num_images, TABLE_ROWS)}
    sections = {key: gallery(work, folder, rows.get(key, num_images), nav=_nav(key), **common, **options)
                for key, _, gallery, options in PAGES}
    tables = WorkTables(work, labels)
    summary = summarize(tables)
    html = render("index", **page_context(tables, _nav("overview"), dataset_name), key="overview",
                  title="Image dataset report", s=summary, g=sections, histogram=histogram_svg(tables, cutoffs),
                  issues=[(name, spec.title) for name, spec in ISSUES.items()])
    index = write_text(html, folder / "index.html")
    return Report(index, sections, summary, html)


def _count(value: int | None) -> str:
    return "not computed" if value is None else f"{value:,}"


def report_markdown(report: Report) -> str:
    """A short Markdown summary of ``report`` (counts and where the pages are)."""
    s = report.summary
    reasons = ", ".join(f"{k} {v}" for k, v in s.bad_reasons.items())
    lines = [
        f"- **files**: {_count(s.files)} (good {_count(s.good)}, bad {_count(s.bad)}"
        + (f": {reasons})" if reasons else ")"),
        f"- **duplicate pairs**: {_count(s.duplicate_pairs)}"
        + (f" ({s.duplicate_images:,} images, {_count(s.identical_files)} byte-identical files)"
           if s.duplicate_images is not None else ""),
        f"- **outliers**: {_count(s.outliers)}",
        f"- **groups of similar images**: {_count(s.components)}"
        + (f" ({s.component_images:,} images)" if s.component_images is not None else ""),
        f"- **likely wrong labels**: {_count(s.wrong_labels)}",
        f"- **train/test leakage pairs**: {_count(s.leakage_pairs)}",
        f"- **report**: `{report.index_path}`",
    ]
    return "### Image dataset report\n\n" + "\n".join(lines) + "\n"
