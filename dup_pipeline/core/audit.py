"""Audit summaries: what is new since the previous audit (bad files, duplicates, outliers, labels)."""

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from dup_pipeline.core.atomic import write_json, write_text
from dup_pipeline.core.workdir import WorkDir

KEEP_AUDITS = 30
CATEGORIES = ("bad_files", "duplicate_pairs", "outliers", "wrong_labels", "leakage_pairs")


def _read(path, columns: list[str]) -> list[str]:
    if not path.exists():
        return []
    df = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    return sorted({" | ".join(str(v) for v in row) for row in df.select(columns).iter_rows()})


def audit_snapshot(work: WorkDir) -> dict[str, list[str]]:
    """The current findings by file name (so they compare across reruns and index changes)."""
    issues = pl.read_parquet(work.label_issues_parquet) if work.label_issues_parquet.exists() else None
    wrong = sorted(issues.filter(pl.col("status") == "wrong")["filename"].to_list()) if issues is not None else []
    return {
        "bad_files": _read(work.bad_files_parquet, ["filename", "error_code"]),
        "duplicate_pairs": _read(work.similarity_parquet, ["filename_from", "filename_to"]),
        "outliers": _read(work.outliers_parquet, ["filename_outlier"]),
        "wrong_labels": wrong,
        "leakage_pairs": _read(work.leakage_csv, ["filename_from", "filename_to"]),
    }


@dataclass(frozen=True)
class AuditSummary:
    """Counts now, and what appeared or disappeared since the previous audit."""

    when: str
    previous: str | None
    totals: dict[str, int]
    new: dict[str, list[str]]
    resolved: dict[str, int]

    def markdown(self, limit: int = 10) -> str:
        lines = [f"### Audit {self.when}", "", f"Compared with: {self.previous or 'nothing (first audit)'}", "",
                 "| finding | now | new | resolved |", "|---|---|---|---|"]
        lines += [f"| {c} | {self.totals[c]} | {len(self.new[c])} | {self.resolved[c]} |" for c in CATEGORIES]
        for category in CATEGORIES:
            if self.new[category]:
                lines += ["", f"New {category.replace('_', ' ')}:"]
                lines += [f"- `{item}`" for item in self.new[category][:limit]]
                if len(self.new[category]) > limit:
                    lines.append(f"- … {len(self.new[category]) - limit} more")
        return "\n".join(lines)


def write_audit_summary(work: WorkDir, now: datetime | None = None) -> AuditSummary:
    """Compare with ``audits/latest.json``, then store this audit as the new latest."""
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    current = audit_snapshot(work)
    latest = work.root / "audits" / "latest.json"
    before = json.loads(latest.read_text()) if latest.exists() else None
    old = before["findings"] if before else {c: [] for c in CATEGORIES}
    summary = AuditSummary(
        when=when,
        previous=before["when"] if before else None,
        totals={c: len(current[c]) for c in CATEGORIES},
        new={c: sorted(set(current[c]) - set(old.get(c, []))) for c in CATEGORIES},
        resolved={c: len(set(old.get(c, [])) - set(current[c])) for c in CATEGORIES},
    )
    record = {"when": when, "findings": current}
    write_json(record, work.root / "audits" / f"{when.replace(':', '')}.json")
    write_json(record, latest)
    for old_record in sorted((work.root / "audits").glob("2*.json"))[:-KEEP_AUDITS]:
        old_record.unlink(missing_ok=True)
    write_text(summary.markdown(), work.root / "audit_summary.md")
    return summary
