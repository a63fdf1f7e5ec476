"""The distribution of nearest-neighbour similarities as an inline SVG histogram, thresholds marked."""

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

import numpy as np

from dup_pipeline.core.report.data import WorkTables

WIDTH, PLOT_HEIGHT, PAD_LEFT, PAD_BOTTOM, LINE = 640, 150, 40, 28, 13
MARK_COLOURS = ("#c0392b", "#8e44ad", "#2471a3")


@dataclass(frozen=True)
class Histogram:
    """Nearest-neighbour similarity per image and the cut-offs to mark (name, value)."""

    values: np.ndarray
    marks: tuple[tuple[str, float], ...]

    def svg(self, bins: int = 50) -> str:
        """The histogram as an inline ``<svg>`` element (no script, no external file)."""
        lo = min(float(np.floor(self.values.min() * 10) / 10), 0.9) if len(self.values) else 0.0
        counts, edges = np.histogram(self.values, bins=bins, range=(lo, 1.0))
        top = max(int(counts.max()), 1) if len(counts) else 1
        pad_top = LINE * (len(self.marks) + 1)  # one line per mark's label above the bars
        plot_w, plot_h = WIDTH - PAD_LEFT - 10, PLOT_HEIGHT
        height = pad_top + plot_h + PAD_BOTTOM

        def x(v: float) -> float:
            return PAD_LEFT + (v - lo) / (1.0 - lo) * plot_w

        def y(c: float) -> float:
            return pad_top + plot_h - c / top * plot_h

        parts = [f'<svg class="histogram" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
                 f'xmlns="http://www.w3.org/2000/svg"><title>Nearest-neighbour similarity of '
                 f'{len(self.values)} images</title>']
        for c, a, b in zip(counts, edges[:-1], edges[1:]):
            if c:
                parts.append(f'<rect x="{x(a):.1f}" y="{y(c):.1f}" width="{max(x(b) - x(a) - 1, 0.5):.1f}" '
                             f'height="{y(0) - y(c):.1f}" fill="#5d8aa8"><title>{a:.2f}–{b:.2f}: {c} '
                             f'images</title></rect>')
        parts.append(f'<line x1="{PAD_LEFT}" y1="{y(0):.1f}" x2="{WIDTH - 10}" y2="{y(0):.1f}" stroke="#555"/>')
        for tick in np.arange(round(lo, 1), 1.0 + 1e-9, 0.1 if lo >= 0.5 else 0.2):
            parts.append(f'<text x="{x(tick):.1f}" y="{height - 10}" font-size="11" text-anchor="middle">'
                         f'{tick:.1f}</text>')
        parts.append(f'<text x="{PAD_LEFT - 4}" y="{pad_top + 4}" font-size="11" text-anchor="end">{top}</text>')
        for k, (name, value) in enumerate(self.marks):
            colour = MARK_COLOURS[k % len(MARK_COLOURS)]
            top_y = LINE * (k + 1)
            anchor, shift = ("end", -4) if x(value) > PAD_LEFT + plot_w * 0.6 else ("start", 4)
            parts.append(f'<line x1="{x(value):.1f}" y1="{top_y - 4}" x2="{x(value):.1f}" y2="{y(0):.1f}" '
                         f'stroke="{colour}" stroke-width="2" stroke-dasharray="5,3"/>')
            parts.append(f'<text x="{x(value) + shift:.1f}" y="{top_y}" font-size="11" fill="{colour}" '
                         f'text-anchor="{anchor}">{escape(name)} {value:.2f}</text>')
        parts.append("</svg>")
        return "".join(parts)


def nearest_similarities(t: WorkTables, cutoffs: Mapping[str, float] | None = None) -> Histogram | None:
    """From ``knn.npz`` (each image's most similar other image), ``cutoffs`` (the run's ``threshold``
    and ``ccthreshold``) and ``outliers.parquet`` (the weakest nearest similarity reported as an outlier)."""
    if not t.work.knn.exists():
        return None
    with np.load(t.work.knn) as data:
        rows, sims, ids = data["rows"], data["sims"].astype(np.float64), data["ids"]
    others = np.where((ids >= 0) & (ids != rows[:, None]) & np.isfinite(sims), sims, -np.inf)
    nearest = others.max(axis=1) if others.size else np.empty(0)
    nearest = nearest[np.isfinite(nearest)]
    marks: list[tuple[str, float]] = []
    if cutoffs:
        threshold, cc = cutoffs.get("threshold"), cutoffs.get("ccthreshold")
        if threshold is not None:
            marks.append(("threshold = ccthreshold" if cc == threshold else "threshold", float(threshold)))
        if cc is not None and cc != threshold:
            marks.append(("ccthreshold", float(cc)))
    out = t.table(t.work.outliers_parquet)
    if out is not None and out.height:
        marks.append(("outliers up to", float(out["distance"].max())))
    return Histogram(np.clip(nearest, -1.0, 1.0), tuple(marks))


def histogram_svg(t: WorkTables, cutoffs: Mapping[str, float] | None = None) -> str:
    """The report's histogram, or '' when the similarity stage did not run."""
    hist = nearest_similarities(t, cutoffs)
    return hist.svg() if hist is not None and len(hist.values) else ""

