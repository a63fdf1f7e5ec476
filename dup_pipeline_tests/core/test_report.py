"""Galleries and the HTML report, rendered from real pipeline runs."""

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner
from PIL import Image

from dup_pipeline.cli import main
from dup_pipeline.core.demo import draw_class_image
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.image_issues import ISSUES
from dup_pipeline.core.inputs import discover_files
from dup_pipeline.core.label_issues import LabelConfig
from dup_pipeline.core.labels import load_labels
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.report import (
    bad_files_gallery,
    build_report,
    component_gallery,
    create_components_gallery,
    create_duplicates_gallery,
    create_outliers_gallery,
    create_similarity_gallery,
    create_stats_gallery,
    duplicates_gallery,
    image_issues_gallery,
    leakage_gallery,
    outliers_gallery,
    report_markdown,
    similarity_gallery,
    stats_gallery,
    thumbnail_uri,
)
from dup_pipeline.core.report.thumbnails import (
    PLACEHOLDER_URI,
    load_thumb,
    thumbnail_src,
)
from dup_pipeline.core.similarity import GraphConfig
from dup_pipeline.core.workdir import WorkDir

XSS = "<script>alert(1)</script>.jpg"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;.jpg"
XSS_LABEL = "<img src=x onerror=alert(2)>"


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def _pairs(gallery) -> set[frozenset[str]]:
    return {frozenset((p.left.name, p.right.name)) for p in gallery.items}


@pytest.fixture(scope="module")
def demo_work(demo_run) -> WorkDir:
    return WorkDir(demo_run.work_dir)


@pytest.fixture(scope="module")
def demo_labels(demo_dataset, demo_work) -> pl.DataFrame:
    return load_labels(demo_dataset.labels, pl.read_parquet(demo_work.manifest), demo_dataset.images)


@pytest.fixture(scope="module")
def demo_report(demo_work, demo_labels, tmp_path_factory):
    return build_report(demo_work, tmp_path_factory.mktemp("report"), labels=demo_labels, num_images=60)


@pytest.fixture(scope="module")
def leak_work(demo_dataset, tmp_path_factory) -> WorkDir:
    """The demo without its test split, then the test split searched against it (run mode 3)."""
    test = demo_dataset.images / "test"
    train = [p for p in discover_files(demo_dataset.images) if not Path(p).is_relative_to(test)]
    config = PipelineConfig(train, str(tmp_path_factory.mktemp("leak_work")), range_size=40)
    run_pipeline(config)
    run_pipeline(config, run_mode=3, test_input=str(test))
    return WorkDir(config.work_dir)


@pytest.fixture(scope="module")
def xss_work(tmp_path_factory) -> WorkDir:
    """A tiny dataset whose image, its copy, a broken file and a test image are all named ``XSS``."""
    root = tmp_path_factory.mktemp("xss")
    rng = np.random.default_rng(5)
    (root / "train" / XSS).parent.mkdir(parents=True)
    for name in ("circles", "stripes", "waves"):
        draw_class_image(name, rng).save(root / "train" / f"{name}.jpg")
    draw_class_image("triangles", rng).save(root / "train" / XSS)
    shutil.copy(root / "train" / XSS, root / "train" / "copy.jpg")
    (root / "bad" / XSS).parent.mkdir(parents=True)
    (root / "bad" / XSS).write_bytes(b"not an image")
    (root / "test" / XSS).parent.mkdir(parents=True)
    shutil.copy(root / "train" / XSS, root / "test" / XSS)
    labels = pd.DataFrame({"filename": [str(root / "train" / n) for n in (XSS, "copy.jpg", "circles.jpg")],
                           "label": [XSS_LABEL, "triangles", "circles"]})
    config = PipelineConfig(discover_files(root / "train") + discover_files(root / "bad"), str(root / "work"),
                            graph=GraphConfig(lower_threshold=0.99), labels=labels,
                            label_config=LabelConfig(min_support=1))
    run_pipeline(config)
    run_pipeline(config, run_mode=3, test_input=str(root / "test"))
    return WorkDir(config.work_dir)


def test_every_section_renders(demo_report):
    assert demo_report.index_path.name == "index.html"
    index = demo_report.index_path.read_text()
    assert set(demo_report.sections) == {"duplicates", "outliers", "components", "similarity", "dark", "mislabels",
                                         "bright", "blur", "bad_files", "leakage", *ISSUES}
    for key, gallery in demo_report.sections.items():
        assert gallery.path == demo_report.index_path.parent / f"{key}.html"
        html = gallery.path.read_text()
        assert html.startswith("<!DOCTYPE html>") and html == gallery.html
        assert f'href="{key}.html"' in index and 'href="index.html"' in html
        assert 0 <= gallery.count <= gallery.total
        assert "http://" not in html and "https://" not in html  # self-contained
        assert gallery._repr_html_().startswith("<iframe srcdoc=")
    leakage = demo_report.sections["leakage"]
    assert not leakage.computed and "Not computed" in leakage.html
    assert not demo_report.sections["mislabels"].computed  # the demo run had no labels
    assert all(g.computed and g.count for k, g in demo_report.sections.items()
               if k not in ("leakage", "mislabels", *ISSUES))
    assert all(demo_report.sections[k].computed for k in ISSUES)
    assert demo_report._repr_html_().startswith("<iframe srcdoc=")


def test_report_counts_and_markdown(demo_report, demo_dataset):
    truth = demo_dataset.ground_truth()
    s = demo_report.summary
    assert s.files == s.good + s.bad and s.bad == len(truth["bad_files"])
    assert s.bad_reasons == {reason: 1 for reason in truth["bad_files"].values()}
    assert s.identical_files == 2 * len(truth["exact_duplicates"])
    assert s.duplicate_pairs and s.outliers and s.components and s.leakage_pairs is None
    md = report_markdown(demo_report)
    assert f"**files**: {s.files} (good {s.good}, bad {s.bad}" in md
    assert "leakage pairs**: not computed" in md and str(demo_report.index_path) in md


def test_duplicates_show_planted_pairs(demo_work, demo_dataset, demo_labels, tmp_path):
    truth = demo_dataset.ground_truth()
    gallery = duplicates_gallery(demo_work, tmp_path, num_images=100, labels=demo_labels)
    assert gallery.path == tmp_path / "duplicates.html" and gallery.count == gallery.total
    pairs = _pairs(gallery)
    identical = {frozenset((p.left.name, p.right.name)) for p in gallery.items
                 if any(b.text == "identical bytes" for b in p.badges)}
    assert identical == {frozenset(pair) for pair in truth["exact_duplicates"]}
    planted = [(o, c) for o, c, _kind in truth["near_duplicates"]] + [tuple(p) for p in truth["leakage"]]
    for original, copy in planted:
        assert frozenset((original, copy)) in pairs
        assert f">{Path(copy).name}<" in gallery.html
    scores = [p.score for p in gallery.items]
    assert scores == sorted(scores, reverse=True)
    first = gallery.items[0]
    assert first.left.dims == "320\u00d7240" and first.left.size.endswith("KB") and first.left.label
    assert f'title="{first.left.path}"' in gallery.html
    strict = duplicates_gallery(demo_work, tmp_path / "strict.html", threshold=0.999, descending=False)
    assert strict.path == tmp_path / "strict.html"
    assert 0 < strict.total < gallery.total and all(p.score >= 0.999 for p in strict.items)


def test_stats_galleries_rank_planted_images(demo_work, demo_dataset, tmp_path):
    truth = demo_dataset.ground_truth()
    dark = stats_gallery(demo_work, tmp_path, metric="dark")
    bright = stats_gallery(demo_work, tmp_path, metric="bright")
    blur = stats_gallery(demo_work, tmp_path, metric="blur")
    assert (dark.path.name, bright.path.name, blur.path.name) == ("dark.html", "bright.html", "blur.html")
    assert dark.path.read_text() != bright.path.read_text()  # no overwrite
    assert dark.items[0].tile.name == truth["dark"][0]
    assert bright.items[0].tile.name == truth["bright"][0]
    top = [item.tile.name for item in blur.items[:6]]
    assert all(blurred in top for _, blurred in truth["blurred"])
    assert dark.count == 20 and dark.total == blur.total
    width = stats_gallery(demo_work, tmp_path, num_images=3, metric="width", descending=False)
    assert width.path.name == "width.html" and width.count == 3
    assert [i.value for i in width.items] == sorted(i.value for i in width.items)
    with pytest.raises(ValueError, match="numeric image_stats column"):
        stats_gallery(demo_work, tmp_path, metric="filename")
    with pytest.raises(ValueError, match="column name"):
        stats_gallery(demo_work, tmp_path, metric="../evil")


def test_outliers_components_similarity_bad_files(demo_work, demo_dataset, demo_labels, tmp_path):
    truth = demo_dataset.ground_truth()
    outliers = outliers_gallery(demo_work, tmp_path)
    assert set(truth["outliers"]) <= {p.left.name for p in outliers.items}
    assert "nearest neighbour" in outliers.html
    components = component_gallery(demo_work, tmp_path, num_images=50, labels=demo_labels)
    groups = [{m.tile.name for m in g.members} for g in components.items]
    for original, copy, _kind in truth["near_duplicates"]:
        assert any({original, copy} <= group for group in groups)
    sizes = [len(g) for g in groups]
    assert sizes == sorted(sizes, reverse=True) and min(sizes) >= 2
    assert component_gallery(demo_work, tmp_path / "big.html", min_items=3).total < components.total
    similar = similarity_gallery(demo_work, tmp_path)
    assert similar.items[0].head is not None and similar.items[0].members
    assert "query image" in similar.html
    bad = bad_files_gallery(demo_work, tmp_path)
    assert {r.name: r.reason for r in bad.items} == truth["bad_files"]
    assert "image file is truncated" in bad.html


def test_chained_components_are_flagged(demo_work, tmp_path):
    work = WorkDir(tmp_path / "work")
    work.root.mkdir()
    shutil.copy(demo_work.components_parquet, work.components_parquet)
    info = pl.read_csv(demo_work.components_info_csv)
    chained = info.filter(pl.col("count") > 1)["component_id"][0]
    info = info.with_columns(pl.when(pl.col("component_id") == chained).then(0.5)
                             .otherwise(pl.col("min_exact_similarity")).alias("min_exact_similarity"))
    info.write_csv(work.components_info_csv)
    gallery = component_gallery(work, tmp_path)
    flagged = [g.title for g in gallery.items if any(b.text.startswith("chained") for b in g.badges)]
    assert flagged == [f"Group {chained}"]
    work.components_info_csv.unlink()  # without the info table the groups come from the Parquet alone
    assert component_gallery(work, tmp_path).total == gallery.total
    assert not duplicates_gallery(work, tmp_path).computed and stats_gallery(work, tmp_path).count == 0


def test_label_disagreements_are_flagged(demo_work, demo_dataset, tmp_path):
    original, copy = demo_dataset.ground_truth()["exact_duplicates"][0]
    manifest = pl.read_parquet(demo_work.manifest)
    labels = manifest.select("index", pl.when(pl.col("path").str.ends_with(copy)).then(pl.lit("b"))
                             .otherwise(pl.lit("a")).alias("label"))
    dup = duplicates_gallery(demo_work, tmp_path, num_images=100, labels=labels)
    flagged = [p for p in dup.items if any(b.text == "labels differ" for b in p.badges)]
    assert [{p.left.name, p.right.name} for p in flagged] == [{original, copy}]
    assert {flagged[0].left.label, flagged[0].right.label} == {"a", "b"}
    comps = component_gallery(demo_work, tmp_path, num_images=100, labels=labels)
    mixed = [g for g in comps.items if any(b.text.startswith("mixed labels") for b in g.badges)]
    assert len(mixed) == 1 and {original, copy} <= {m.tile.name for m in mixed[0].members}


def test_leakage_gallery_shows_planted_leaks(leak_work, demo_dataset, tmp_path):
    truth = demo_dataset.ground_truth()
    gallery = leakage_gallery(leak_work, tmp_path)
    assert gallery.computed and gallery.path.name == "leakage.html"
    pairs = {(p.left.name, p.right.name) for p in gallery.items}
    for train, test in truth["leakage"]:
        assert (test, train) in pairs
    assert "test image" in gallery.html and "training image" in gallery.html
    report = build_report(leak_work, tmp_path / "report")
    assert report.summary.leakage_pairs == gallery.total and "leakage pairs**: " + str(gallery.total) in (
        report_markdown(report))


def test_file_names_are_escaped_on_every_page(xss_work, tmp_path):
    labels = pl.read_parquet(xss_work.manifest).select("index", pl.lit(XSS_LABEL).alias("label"))
    report = build_report(xss_work, tmp_path / "report", labels=labels)
    pages = [report.index_path, *(g.path for g in report.sections.values())]
    assert len(pages) == 11 + len(ISSUES) and all(g.computed for g in report.sections.values())
    assert all(g.count for k, g in report.sections.items() if k not in ISSUES)
    for page in pages:
        html = page.read_text()
        assert XSS not in html and "<script" not in html, page.name
        assert XSS_ESCAPED in html or (page.stem in ISSUES and not report.sections[page.stem].count), page.name
    for gallery in report.sections.values():
        if gallery.path.name != "bad_files.html" and gallery.count:
            assert XSS_LABEL not in gallery.html and "&lt;img src=x onerror=alert(2)&gt;" in gallery.html
    assert "<script" not in report.sections["duplicates"]._repr_html_()


def test_save_path_semantics(xss_work, tmp_path):
    default = duplicates_gallery(xss_work)
    assert default.path == xss_work.root / "galleries" / "duplicates.html" and default.path.exists()
    folder = outliers_gallery(xss_work, tmp_path / "new" / "dir")
    assert folder.path == tmp_path / "new" / "dir" / "outliers.html" and folder.path.exists()
    single = similarity_gallery(xss_work, str(tmp_path / "mine.html"))
    assert single.path == tmp_path / "mine.html" and single.path.exists()
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / "new" / "dir").glob(".*"))
    external = stats_gallery(xss_work, tmp_path / "ext", metric="dark", inline=False)
    thumbs = list((tmp_path / "ext" / "thumbs").glob("*.jpg"))
    assert thumbs and "data:image/jpeg" not in external.html and 'src="thumbs/' in external.html


def test_fastdup_style_wrappers(demo_work, tmp_path):
    dup = create_duplicates_gallery(demo_work.similarity_csv, save_path=tmp_path, num_images=5)
    assert dup.path == tmp_path / "duplicates.html" and dup.count == 5
    via_outliers = create_duplicates_gallery(demo_work.outliers_csv, save_path=tmp_path)
    assert via_outliers.path == tmp_path / "outliers.html" and via_outliers.title == "Outliers"
    assert create_outliers_gallery(demo_work.outliers_csv, tmp_path).total == via_outliers.total
    blur = create_stats_gallery(demo_work.image_stats_csv, tmp_path, num_images=4)
    assert blur.path.name == "blur.html" and blur.count == 4
    dark = create_stats_gallery(demo_work.root, tmp_path, metric="dark")
    assert dark.path.name == "dark.html" and dark.items[0].value == min(i.value for i in dark.items)
    unique = create_stats_gallery(demo_work.root, tmp_path, metric="unique")
    assert [i.value for i in unique.items] == sorted(i.value for i in unique.items)  # fastdup: ascending
    comps = create_components_gallery(demo_work.root, tmp_path, num_images=2)
    assert comps.path.name == "components.html" and comps.count == 2
    sim = create_similarity_gallery(demo_work.similarity_csv, tmp_path, num_images=3)
    assert sim.path.name == "similarity.html" and sim.count == 3


def test_index_shows_the_nearest_similarity_histogram_with_the_cut_offs(demo_work, tmp_path):
    index = build_report(demo_work, tmp_path, cutoffs={"threshold": 0.8, "ccthreshold": 0.85}).index_path.read_text()
    svg = re.search(r'<svg class="histogram".*?</svg>', index, re.S).group(0)
    with np.load(demo_work.knn) as knn:
        images = len(knn["rows"])
    counts = [int(n) for n in re.findall(r"<title>[-0-9.]+–[-0-9.]+: (\d+) images</title>", svg)]
    assert sum(counts) == images  # every image with a vector is in one bar
    assert ">threshold 0.80</text>" in svg and ">ccthreshold 0.85</text>" in svg
    same = build_report(demo_work, tmp_path / "same", cutoffs={"threshold": 0.9, "ccthreshold": 0.9})
    assert ">threshold = ccthreshold 0.90</text>" in same.index_path.read_text()
    weakest = pl.read_parquet(demo_work.outliers_parquet)["distance"].max()
    assert f"outliers up to {weakest:.2f}" in svg


def test_the_report_stage_marks_the_runs_configured_cut_offs(demo_dataset, demo_work, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(demo_work.root, work)
    graph = GraphConfig(threshold=0.83, ccthreshold=0.87)
    config = PipelineConfig(demo_dataset.images, str(work), range_size=40, graph=graph)
    summary = run_pipeline(config, run_mode=2)
    svg = re.search(r'<svg class="histogram".*?</svg>', summary.report.read_text(), re.S).group(0)
    assert ">threshold 0.83</text>" in svg and ">ccthreshold 0.87</text>" in svg
    weakest = pl.read_parquet(work / "outliers.parquet")["distance"].max()
    assert f"outliers up to {weakest:.2f}" in svg
    rewritten = CliRunner().invoke(main, ["report", str(work)])  # the standalone command keeps the run's cut-offs
    assert rewritten.exit_code == 0, rewritten.output
    assert ">threshold 0.83</text>" in summary.report.read_text()


def test_image_issue_galleries_list_the_images_made_to_have_them(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(5)
    for i in range(5):
        draw_class_image("waves", rng).save(images / f"w{i}.png")
    Image.fromarray(rng.integers(0, 255, (40, 400, 3), dtype=np.uint8)).save(images / "panorama.png")
    Image.fromarray(rng.integers(0, 255, (120, 120), dtype=np.uint8), "L").save(images / "gray.png")
    Image.new("RGB", (120, 120), (90, 100, 110)).save(images / "flat.png")
    run_pipeline(PipelineConfig(images, str(tmp_path / "work")), features=False)
    work = WorkDir(tmp_path / "work")
    report = build_report(work)
    shown = {k: {Path(n).name for n in re.findall(r'title="([^"]+\.png)"', report.sections[k].html)} for k in ISSUES}
    assert "panorama.png" in shown["odd_aspect_ratio"] and "gray.png" in shown["grayscale"]
    assert shown["near_constant"] == {"flat.png"}
    assert report.sections["near_constant"].total == 1
    loose = image_issues_gallery(work, tmp_path / "nc.html", issue="near_constant", thresholds="near_constant=300")
    assert loose.total == 8  # every image is below a standard deviation of 300
    with pytest.raises(ConfigError, match="issue must be one of"):
        image_issues_gallery(work, issue="blurry")


def test_stats_only_run_degrades_gracefully(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        draw_class_image("waves", rng).save(images / f"w{i}.png")
    run_pipeline(PipelineConfig(images, str(tmp_path / "work")), features=False)
    work = WorkDir(tmp_path / "work")
    report = build_report(work)
    assert report.index_path == work.root / "report" / "index.html"
    for key in ("duplicates", "outliers", "components", "similarity", "leakage"):
        gallery = report.sections[key]
        assert not gallery.computed and gallery.count == 0 and "Not computed" in gallery.html
    assert report.sections["dark"].count == 4 and report.sections["bad_files"].total == 0
    assert "Every file could be read" in report.sections["bad_files"].html
    assert report.summary.duplicate_pairs is None and report.summary.files == 4
    assert "not computed" in report.index_path.read_text()
    empty = build_report(tmp_path / "nothing_here", tmp_path / "empty_report")
    assert not any(g.computed for g in empty.sections.values()) and empty.summary.files is None


def test_thumbnails_handle_any_mode_and_bad_files(tmp_path):
    cases = {
        "rgba.png": Image.new("RGBA", (400, 200), (255, 0, 0, 128)),
        "p_transparent.png": Image.new("P", (300, 300)),
        "la.png": Image.new("LA", (100, 50)),
        "i16.png": Image.fromarray((np.arange(200 * 100, dtype=np.uint16) * 3).reshape(100, 200)),
        "float.tiff": Image.fromarray(np.linspace(-1, 1, 50 * 60, dtype=np.float32).reshape(50, 60)),
        "cmyk.jpg": Image.new("CMYK", (240, 120), (0, 50, 100, 0)),
        "bilevel.png": Image.new("1", (90, 90), 1),
    }
    cases["p_transparent.png"].info["transparency"] = 0
    for name, img in cases.items():
        img.save(tmp_path / name)
        thumb = _decode(thumbnail_uri(tmp_path / name))
        assert thumb.mode == "RGB" and max(thumb.size) <= 180, name
    assert _decode(thumbnail_uri(tmp_path / "rgba.png")).size == (180, 90)
    assert load_thumb(tmp_path / "i16.png").width == 200
    rotated = Image.new("RGB", (400, 200), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rotated.save(tmp_path / "exif.jpg", exif=exif.tobytes())
    assert _decode(thumbnail_uri(tmp_path / "exif.jpg")).size == (90, 180)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    assert thumbnail_uri(tmp_path / "broken.jpg") == PLACEHOLDER_URI
    assert thumbnail_uri(tmp_path / "missing.jpg") == PLACEHOLDER_URI
    assert thumbnail_src(tmp_path / "rgba.png", tmp_path / "page").startswith("thumbs/")
    assert len(list((tmp_path / "page" / "thumbs").iterdir())) == 1


def test_labels_must_have_index_and_label(demo_work, tmp_path):
    with pytest.raises(ValueError, match="'index' and 'label'"):
        duplicates_gallery(demo_work, tmp_path, labels=pl.DataFrame({"filename": ["a"], "label": ["b"]}))
