"""Audit summaries: what is new since the previous audit (bad files, duplicates, outliers, labels).

Findings are compared by file name, so they compare across reruns and index changes. A category
that was not measured (label findings of a dataset without labels) is ``None``, never 0. "New
outliers" are images that became outliers: isolated below the previous audit's cut-off, not old
images that a larger dataset's outlier fraction now happens to include.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from dup_pipeline.core.atomic import write_json, write_text
from dup_pipeline.core.workdir import AUDIT_SUMMARY, WorkDir

KEEP_AUDITS = 30
CATEGORIES = ("bad_files", "duplicate_pairs", "outliers", "wrong_labels", "leakage_pairs")


def _read(path, columns: list[str]) -> list[str] | None:
    if not path.exists():
        return None
    df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    return sorted({" | ".join(str(v) for v in row) for row in df.select(columns).iter_rows()})


def _outliers(work: WorkDir) -> tuple[dict[str, float], float | None]:
    """Outliers by file name with their nearest-neighbour similarity, and the cut-off (the largest)."""
    if not work.outliers_parquet.exists():
        return {}, None
    out = pl.read_parquet(work.outliers_parquet)
    found = dict(zip(out["filename_outlier"].cast(pl.String).to_list(), out["distance"].to_list()))
    return found, (max(found.values()) if found else None)


def audit_snapshot(work: WorkDir) -> dict[str, list[str] | None]:
    """The current findings by file name (``None``: not measured)."""
    issues = pl.read_parquet(work.label_issues_parquet) if work.label_issues_parquet.exists() else None
    return {
        "bad_files": _read(work.bad_files_parquet, ["filename", "error_code"]) or [],
        "duplicate_pairs": _read(work.similarity_parquet, ["filename_from", "filename_to"]) or [],
        "outliers": sorted(_outliers(work)[0]),
        "wrong_labels": sorted(issues.filter(pl.col("status") == "wrong")["filename"].to_list())
        if issues is not None else None,
        "leakage_pairs": _read(work.leakage_csv, ["filename_from", "filename_to"]),
    }


@dataclass(frozen=True)
class AuditSummary:
    """Counts now (``None``: not measured), and what appeared or disappeared since the previous audit."""

    when: str
    previous: str | None
    totals: dict[str, int | None]
    new: dict[str, list[str]]
    resolved: dict[str, int]

    def markdown(self, limit: int = 10) -> str:
        lines = [f"### Audit {self.when}", "", f"Compared with: {self.previous or 'nothing (first audit)'}", "",
                 "| finding | now | new | resolved |", "|---|---|---|---|"]
        for c in CATEGORIES:
            if self.totals[c] is None:
                lines.append(f"| {c} | not measured (no labels) | | |")
            else:
                lines.append(f"| {c} | {self.totals[c]} | {len(self.new[c])} | {self.resolved[c]} |")
        for category in CATEGORIES:
            if self.new[category]:
                what = "images that became outliers" if category == "outliers" else category.replace("_", " ")
                lines += ["", f"New {what}:"]
                lines += [f"- `{item}`" for item in self.new[category][:limit]]
                if len(self.new[category]) > limit:
                    lines.append(f"- … {len(self.new[category]) - limit} more")
        return "\n".join(lines)

    def metrics(self) -> dict[str, int]:
        """Numbers for Dagster's plots: each measured category now, new and resolved."""
        found: dict[str, int] = {}
        for c in CATEGORIES:
            if self.totals[c] is not None:
                found.update({c: self.totals[c], f"new_{c}": len(self.new[c]), f"resolved_{c}": self.resolved[c]})
        return found


def _new_outliers(work: WorkDir, old: list[str], old_cutoff: float | None) -> list[str]:
    """Outliers now that were not before and are below the previous cut-off (they became isolated)."""
    current, _ = _outliers(work)
    return sorted(f for f, sim in current.items() if f not in set(old) and (old_cutoff is None or sim <= old_cutoff))


def write_audit_summary(work: WorkDir, now: datetime | None = None) -> AuditSummary:
    """Compare with ``audits/latest.json``, then store this audit as the new latest."""
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    current = audit_snapshot(work)
    latest = work.root / "audits" / "latest.json"
    before = json.loads(latest.read_text()) if latest.exists() else None
    old = before["findings"] if before else {}
    new = {c: sorted(set(current[c] or []) - set(old.get(c) or [])) for c in CATEGORIES}
    new["outliers"] = _new_outliers(work, old.get("outliers") or [], before.get("outlier_cutoff") if before else None)
    summary = AuditSummary(
        when=when,
        previous=before["when"] if before else None,
        totals={c: None if current[c] is None else len(current[c]) for c in CATEGORIES},
        new=new,
        resolved={c: len(set(old.get(c) or []) - set(current[c] or [])) for c in CATEGORIES},
    )
    record = {"when": when, "findings": current, "outlier_cutoff": _outliers(work)[1], "metrics": summary.metrics()}
    write_json(record, work.root / "audits" / f"{when.replace(':', '')}.json")
    write_text(summary.markdown(), work.root / AUDIT_SUMMARY)
    # latest.json last: a run killed before it compares with the same previous audit when rerun
    write_json(record, latest)
    for old_record in sorted((work.root / "audits").glob("2*.json"))[:-KEEP_AUDITS]:
        old_record.unlink(missing_ok=True)
    return summary
