import os
import re
from collections import Counter

import numpy as np
import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner

from dup_pipeline.cli import main

from dup_pipeline.core.label_issues import (
    FILTERS,
    ISSUE_COLUMNS,
    RANK_METHODS,
    LabelConfig,
    label_error_rate,
    label_issues,
    precision_recall,
)
from dup_pipeline.core.labels import LabelsError, labels_from_folders, load_labels
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.similarity import Neighbours
from dup_pipeline_tests.conftest import noise_image, save_image


@pytest.fixture(scope="module")
def labeled_run(demo_dataset, demo_run, tmp_path_factory):
    """The demo's similarity stage rerun (nothing recomputed) with its labels.csv."""
    import shutil

    work = tmp_path_factory.mktemp("labeled") / "work"
    shutil.copytree(demo_run.work_dir, work)
    return run_pipeline(PipelineConfig(demo_dataset.images, str(work), range_size=40, labels=demo_dataset.labels))


def _planted_flips(demo_dataset, manifest_paths) -> set[int]:
    root = str(demo_dataset.images) + "/"
    wrong = set(demo_dataset.ground_truth()["wrong_labels"])
    return {i for i, p in manifest_paths.items() if p.removeprefix(root) in wrong}


def test_planted_label_flips_are_found_with_precision_and_recall(demo_dataset, labeled_run):
    issues = labeled_run.labels.issues
    manifest_paths = dict(zip(issues["index"], issues["filename"]))
    truth = _planted_flips(demo_dataset, manifest_paths)
    wrong = issues.filter(pl.col("status") == "wrong")["index"].to_list()
    precision, recall = precision_recall(wrong, truth)
    assert precision == 1.0 and recall == 1.0
    top = issues.head(len(truth))["index"].to_list()  # ranking: the flips come first
    assert set(top) == truth
    true_label = {v["given"]: v["true"] for v in demo_dataset.ground_truth()["wrong_labels"].values()}
    for row in issues.filter(pl.col("status") == "wrong").iter_rows(named=True):
        assert row["suggested_label"] == true_label[row["label"]]
    mislabels = pl.read_csv(f"{labeled_run.work_dir}/mislabels.csv")
    assert mislabels.columns[:4] == ["filename", "label", "suggested_label", "score"]
    assert mislabels["score"].is_sorted(descending=True)
    assert 0 < label_error_rate(issues) < 0.1


def test_cross_split_copies_are_reported_as_leakage(demo_dataset, labeled_run):
    leak = labeled_run.labels.leakage
    root = str(demo_dataset.images) + "/"
    found = {tuple(sorted((a.removeprefix(root), b.removeprefix(root))))
             for a, b in zip(leak["filename_from"], leak["filename_to"])}
    assert {tuple(sorted(p)) for p in demo_dataset.ground_truth()["leakage"]} == found
    assert (leak["split_from"] != leak["split_to"]).all()
    assert labeled_run.labels.leaking_components.height == len(found)


def _knn(rows, neighbours, sims) -> Neighbours:
    return Neighbours(np.array(rows), np.array(sims, dtype=np.float32), np.array(neighbours), "test")


def test_disagreeing_neighbours_are_ambiguous_not_wrong():
    labels = pl.DataFrame({"index": [0, 1, 2, 3, 4, 5], "filename": list("abcdef"),
                           "label": ["cat", "dog", "bird", "dog", "dog", None], "split": [None] * 6})
    knn = _knn([0, 1, 2, 3, 4, 5],
               [[0, 1, 2, 5], [1, 3, 4, 0], [2, 0, 1, 3], [3, 4, 1, 0], [4, 3, 1, 0], [5, 0, 1, 2]],
               [[1, 0.9, 0.9, 0.95], [1, 0.9, 0.9, 0.5], [1, 0.5, 0.5, 0.4], [1, 0.9, 0.9, 0.5],
                [1, 0.9, 0.9, 0.5], [1, 0.9, 0.9, 0.9]])
    issues = label_issues(knn, labels, LabelConfig())
    status = dict(zip(issues["index"], issues["status"]))
    assert status[0] == "ambiguous"  # neighbours say dog and bird equally: not a confident flip
    assert status[1] == "ok" and 5 not in status  # unlabeled images are tolerated, not judged
    knn_flip = _knn([0, 1, 3, 4], [[0, 1, 3, 4], [1, 3, 4, 0], [3, 1, 4, 0], [4, 1, 3, 0]],
                    [[1, 0.9, 0.9, 0.9]] * 4)
    flipped = label_issues(knn_flip, labels, LabelConfig())
    assert flipped.filter(pl.col("index") == 0)["status"].item() == "wrong"


def _reference_votes(knn: Neighbours, labels: pl.DataFrame, config: LabelConfig) -> dict[int, dict]:
    """The vote spelled out image by image, neighbour by neighbour (what label_issues vectorizes)."""
    label_of = {i: lab for i, lab in zip(labels["index"], labels["label"]) if lab is not None}
    found = {}
    for image, sims, ids in zip(knn.rows.tolist(), knn.sims.tolist(), knn.ids.tolist()):
        if image not in label_of:
            continue
        votes: dict[str, float] = {}
        neighbours = []
        for sim, other in zip(sims, ids):
            theirs = label_of.get(other)
            if other != image and other >= 0 and theirs is not None and sim >= config.min_similarity:
                votes[theirs] = votes.get(theirs, 0.0) + sim ** config.sharpness
                neighbours.append(other)
        found[image] = {"votes": votes, "neighbours": neighbours, "label": label_of[image]}
    return found


def test_label_issues_are_the_smoothed_vote_judged_by_confident_learning():
    seen = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        n, k = int(rng.integers(1, 300)), int(rng.integers(1, 12))
        rows = np.sort(rng.choice(2 * n, n, replace=False))
        ids = rng.choice(rows, (n, k))
        ids[rng.random((n, k)) < 0.05] = -1  # fewer neighbours found
        ids[:, 0] = np.where(rng.random(n) < 0.3, rows, ids[:, 0])  # the image itself
        sims = (rng.choice([0.2, 0.5, 0.9, 0.95, 1.0], (n, k)) if seed % 2 else rng.uniform(0, 1, (n, k))).astype(
            np.float32)  # odd seeds: many exactly tied votes
        sims[ids < 0] = np.nan
        labels = pl.DataFrame({"index": rows, "filename": [f"{i}.jpg" for i in rows],
                               "label": rng.choice(["a", "b", "c", None], n, p=[0.4, 0.3, 0.2, 0.1]).tolist()},
                              schema={"index": pl.Int64, "filename": pl.String, "label": pl.String})
        config = LabelConfig(min_support=int(rng.integers(1, 4)))
        knn = Neighbours(rows, sims, ids, "test")
        reference = _reference_votes(knn, labels, config)
        issues = label_issues(knn, labels, config)
        assert issues.columns == list(ISSUE_COLUMNS) and issues.height == len(reference)
        assert issues["score"].is_sorted(descending=True)
        judged = {i: r for i, r in reference.items()
                  if len(r["neighbours"]) >= config.min_support and sum(r["votes"].values()) > 0}
        prior = Counter(r["label"] for r in judged.values())
        own = issues.filter(pl.col("index").is_in(list(judged))).group_by("label").agg(pl.col("label_probability").mean())
        class_threshold = dict(zip(own["label"], own["label_probability"]))
        for row in issues.iter_rows(named=True):
            ref = reference[row["index"]]
            assert row["neighbours"] == ref["neighbours"] and row["support"] == len(ref["neighbours"])
            if row["index"] not in judged:
                assert row["status"] == "unsupported" and row["score"] == 0 and row["suggested_label"] is None
                continue
            votes, total = ref["votes"], sum(ref["votes"].values())
            share = {c: (votes.get(c, 0.0) + config.smoothing * prior[c] / len(judged)) / (total + config.smoothing)
                     for c in prior}
            assert row["label_probability"] == pytest.approx(share[row["label"]], rel=1e-9)
            assert row["score"] == pytest.approx(1 - share[row["label"]], rel=1e-9)  # self-confidence
            assert row["suggested_probability"] == pytest.approx(max(share.values()), rel=1e-9)
            assert row["agreement"] == pytest.approx(max(votes.values()) / total, rel=1e-9)
            if row["status"] in ("wrong", "ambiguous"):
                assert row["suggested_label"] != row["label"]
                assert (row["agreement"] >= config.agreement) == (row["status"] == "wrong")
            assert row["class_threshold"] == pytest.approx(class_threshold[row["label"]], rel=1e-6)
        seen |= set(issues["status"])
    assert seen == {"ok", "wrong", "ambiguous", "unsupported"}


def test_a_flipped_label_in_a_real_sized_class_is_flagged_by_cleanlab_with_its_suggestion():
    """30 images in three tight clusters; image 0 of cluster 'a' carries 'b': only it is wrong."""
    rng = np.random.default_rng(0)
    rows = np.arange(30)
    cluster = rows // 10
    ids = np.array([[i, *rng.choice(rows[(cluster == cluster[i]) & (rows != i)], 6, replace=False)] for i in rows])
    sims = np.full(ids.shape, 0.9, dtype=np.float32)
    names = np.array(["a", "b", "c"])[cluster].tolist()
    names[0] = "b"
    labels = pl.DataFrame({"index": rows, "filename": [f"{i}.jpg" for i in rows], "label": names})
    issues = label_issues(Neighbours(rows, sims, ids, "test"), labels)
    flagged = issues.filter(pl.col("status") != "ok")
    assert flagged["index"].to_list() == [0] and flagged["status"].item() == "wrong"
    assert flagged["suggested_label"].item() == "a" and flagged["suggested_probability"].item() > 0.9
    assert issues.row(0, named=True)["index"] == 0  # ranked first


def test_bad_label_files_get_clear_errors(demo_dataset, demo_run, tmp_path):
    manifest = pl.read_parquet(f"{demo_run.work_dir}/manifest.parquet")
    no_column = tmp_path / "a.csv"
    no_column.write_text("file,label\nx.jpg,cat\n")
    with pytest.raises(LabelsError, match="'filename' column"):
        load_labels(no_column, manifest, demo_dataset.images)
    unknown = tmp_path / "b.csv"
    unknown.write_text("filename,label\ntrain/landscapes/landscapes_000.jpg,landscapes\nnope/ghost1.jpg,x\nghost2.png,y\n")
    with pytest.raises(LabelsError, match="2 labeled file names are not among the input images.*ghost1.jpg"):
        load_labels(unknown, manifest, demo_dataset.images)
    with pytest.raises(LabelsError, match="does not exist"):
        load_labels(tmp_path / "missing.csv", manifest, demo_dataset.images)
    partial = load_labels(pd.DataFrame({"filename": ["train/landscapes/landscapes_000.jpg"], "label": ["landscapes"]}),
                          manifest, demo_dataset.images)
    assert partial.height == 1 and partial["split"].null_count() == 1


def test_labels_from_folder_names(demo_dataset, demo_run):
    manifest = pl.read_parquet(f"{demo_run.work_dir}/manifest.parquet")
    labels = labels_from_folders(manifest, demo_dataset.images)
    row = labels.filter(pl.col("filename").str.ends_with("train/landscapes/landscapes_000.jpg")).row(0, named=True)
    assert (row["label"], row["split"]) == ("landscapes", "train")


def test_label_and_leakage_galleries_show_the_planted_cases(demo_dataset, labeled_run):
    from dup_pipeline.core.report.galleries import label_gallery, leakage_gallery

    labels = pl.read_parquet(f"{labeled_run.work_dir}/labels.parquet")
    page = label_gallery(labeled_run.work_dir, labels=labels).path.read_text()
    for rel, change in demo_dataset.ground_truth()["wrong_labels"].items():
        assert rel.rsplit("/", 1)[-1] in page
        assert f"labeled {change['given']} \u2192 suggested {change['true']}" in page
    leak_page = leakage_gallery(labeled_run.work_dir).path.read_text()
    for train, test in demo_dataset.ground_truth()["leakage"]:
        assert train.rsplit("/", 1)[-1] in leak_page and test.rsplit("/", 1)[-1] in leak_page
    assert labeled_run.report is not None and labeled_run.report.exists()


@pytest.mark.parametrize("text, problem", [
    ("", " is empty"),
    ("\n\n", " is empty"),
    ("filename,label\n", " has a header \\(filename,label\\) but no rows"),
    ('filename,label\n"a.png,cat\nb.png,dog\n', " is not valid CSV .*a quote that is never closed"),
    ("filename,label\na.png,cat,extra\n", ": 1 rows do not have the header's 2 fields, e.g. lines \\[2\\]"),
    ("filename,label,label\na.png,cat,dog\n", " repeats the columns \\['label'\\]"),
])
def test_malformed_labels_csv_is_a_labels_error_naming_file_and_problem(tmp_path, text, problem):
    manifest = pl.DataFrame({"index": [0], "path": [str(tmp_path / "a.png")]})
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(LabelsError, match=re.escape(f"labels file '{labels}'") + problem):
        load_labels(labels, manifest, tmp_path)
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(LabelsError, match="is not a regular file"):
        load_labels(tmp_path / "fifo.csv", manifest, tmp_path)  # never opened: reading a pipe would block
    (tmp_path / "latin1.csv").write_bytes("filename,label\na.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(LabelsError, match="is not UTF-8 text"):
        load_labels(tmp_path / "latin1.csv", manifest, tmp_path)


def test_labels_csv_error_on_the_command_line_exits_1_without_traceback(tmp_path):
    save_image(tmp_path / "images" / "a.png", noise_image(1))
    (tmp_path / "labels.csv").write_text("filename,label\n")
    result = CliRunner().invoke(main, ["run", str(tmp_path / "images"), str(tmp_path / "w"), "--stats-only",
                                       "--quiet", "--labels", str(tmp_path / "labels.csv")])
    assert result.exit_code == 1, result.output
    assert f"labels file '{tmp_path / 'labels.csv'}' has a header (filename,label) but no rows" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_every_cleanlab_filter_and_ranking_copes_with_tiny_and_single_class_sets():
    """Random small graphs (one image, one class, classes of one image) with every filter_by / rank_by."""
    for seed in range(230, 300):
        rng = np.random.default_rng(seed)
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        rows = np.arange(n)
        knn = Neighbours(rows, rng.uniform(0, 1, (n, k)).astype(np.float32), rng.choice(rows, (n, k)), "test")
        names = rng.choice([f"c{j}" for j in range(int(rng.integers(1, 6)))], n).tolist()
        labels = pl.DataFrame({"index": rows, "filename": [f"{i}.jpg" for i in rows], "label": names})
        config = LabelConfig(filter_by=FILTERS[seed % len(FILTERS)], rank_by=RANK_METHODS[seed % len(RANK_METHODS)],
                             min_support=1)
        issues = label_issues(knn, labels, config)
        assert issues.height == n and issues["score"].is_finite().all(), (seed, config)
        assert ((issues["score"] >= 0) & (issues["score"] <= 1)).all(), (seed, config)
