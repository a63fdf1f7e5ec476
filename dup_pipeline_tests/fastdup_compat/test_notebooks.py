"""fastdup's public notebooks' call sequences (quick start, cleaning, duplicates, labelled and
object-detection datasets, image search, feature vectors, v0 files), replayed on the demo dataset
with ``import dup_pipeline as fastdup``. Paths are built as the notebooks build them: relative to the
current directory (``data_dir + name``)."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest

import dup_pipeline as fastdup
from dup_pipeline.core.errors import ConfigError

DATA = "demo/images/"


@pytest.fixture(scope="module")
def cwd(demo_dataset, tmp_path_factory):
    """A working folder with the demo under ``demo/`` (the notebooks' relative paths)."""
    folder = tmp_path_factory.mktemp("notebook")
    (folder / "demo").symlink_to(demo_dataset.root)
    old = os.getcwd()
    os.chdir(folder)
    yield folder
    os.chdir(old)


@pytest.fixture(scope="module")
def truth(demo_dataset):
    return demo_dataset.ground_truth()


@pytest.fixture(scope="module")
def fd(cwd):
    """Quick start: ``fd = fastdup.create(work_dir, input_dir); fd.run()``."""
    fd = fastdup.create(work_dir="fastdup_work_dir/", input_dir=DATA)
    assert fd.run(num_images=1000, print_summary=False) == 0
    return fd


@pytest.fixture(scope="module")
def labelled(cwd):
    """The labelled notebook: annotations with ``data_dir + x`` file names and a split column."""
    df_annot = pd.read_csv("demo/labels.csv")
    df_annot["filename"] = df_annot["filename"].apply(lambda x: DATA + x)
    fd = fastdup.create(work_dir="labelled_work_dir", input_dir=DATA)
    # threshold 0.7 also lists look-alikes, so a wrong label shows among neighbours of another label
    assert fd.run(annotations=df_annot, ccthreshold=0.9, threshold=0.7, print_summary=False) == 0
    return fd, df_annot


def test_quick_start(fd, capsys, truth):
    lines = fd.summary()
    assert isinstance(lines, list) and lines[0] == f"Dataset contains {fd.num_instances(valid_only=False)} images"
    assert any(line.startswith("Valid images are") and f"({len(truth['bad_files'])}) of the data" in line
               for line in lines)
    assert any(line.startswith("Outliers:") for line in lines)
    assert "Dataset Analysis Summary" in capsys.readouterr().out
    assert fd.run_summary.files == fd.num_instances(valid_only=False)
    assert [fd.vis.duplicates_gallery(), fd.vis.outliers_gallery(), fd.vis.stats_gallery(metric="dark"),
            fd.vis.component_gallery()] == [0, 0, 0, 0]
    pairs = fd.vis.similarity_gallery()
    assert isinstance(pairs, pd.DataFrame) and {"from", "to", "distance"} <= set(pairs.columns)
    # file names as fastdup shows them: the input folder as given, then the path inside it
    assert fd.img_stats()["filename"].str.startswith(DATA).all()
    assert set(fd.invalid_instances()["filename"]) == {DATA + f for f in truth["bad_files"]}


def test_cleaning_notebook(fd, truth):
    broken = fd.invalid_instances()["filename"].to_list()
    assert sorted(broken) == sorted(DATA + f for f in truth["bad_files"])
    outlier_df = fd.outliers()
    assert set(DATA + f for f in truth["outliers"]) <= set(outlier_df["filename_outlier"].head(4))
    cc, _ = fd.connected_components()
    clusters = cc[cc["count"] >= 2].groupby("component_id").agg(
        {"filename": "unique", "mean_distance": "max", "count": "count"})
    copies = [{DATA + a, DATA + b} for a, b in truth["exact_duplicates"]]
    assert all(any(c <= set(files) for files in clusters["filename"]) for c in copies)
    stats = fd.img_stats().set_index("filename")
    assert stats.loc[DATA + truth["dark"][0], "mean"] == stats["mean"].min()
    assert stats.loc[DATA + truth["bright"][0], "mean"] == stats["mean"].max()
    for sharp, blurred in truth["blurred"]:  # fastdup's scale: the tutorial's blur < 50 rule
        assert stats.loc[DATA + blurred, "blur"] < 50 < stats.loc[DATA + sharp, "blur"]


def test_duplicates_notebook(fd, cwd, truth, tmp_path):
    grouped = fd.connected_components_grouped(sort_by="comp_size", ascending=False)
    assert list(grouped.columns[:4]) == ["files", "component_id", "files_ids", "distance"]
    assert (grouped["len"] == grouped["files"].apply(len)).all() and grouped["len"].is_monotonic_decreasing
    top = fastdup.find_top_components("fastdup_work_dir")
    doomed = fastdup.delete_components(top, dry_run=True)
    copies = [(DATA + a, DATA + b) for a, b in truth["exact_duplicates"]]
    assert all((a in doomed) != (b in doomed) for a, b in copies)  # exactly one of each pair goes
    assert all(os.path.exists(f) for f in doomed)  # dry run
    for ascending in (False, True):  # the largest component has the planted near-duplicates, the smallest not
        assert fd.vis.component_gallery(num_images=1, sort_by="comp_size", ascending=ascending,
                                        save_path=str(tmp_path / str(ascending))) == 0
        page = (tmp_path / str(ascending) / "components.html").read_text()
        assert ("_resized_jpeg" in page) != ascending
    folder = tmp_path / "train"
    shutil.copytree(cwd / "demo" / "images" / "train", folder)
    removed = fastdup.remove_duplicates(str(folder), work_dir=str(tmp_path / "w"), dry_run=False)
    assert removed and not any(os.path.exists(f) for f in removed)
    left = {p.name for p in folder.rglob("*")}
    assert all((os.path.basename(a) in left) != (os.path.basename(b) in left) for a, b in copies)


def test_labelled_notebook(labelled, truth, tmp_path):
    fd, df_annot = labelled
    stats = fd.img_stats()
    given = df_annot.set_index("filename")
    assert (stats.set_index("filename")["label"] == given.loc[stats["filename"], "label"].to_numpy()).all()
    assert set(stats["split"]) == {"train", "test"}
    cc, _ = fd.connected_components()
    assert {"label", "split"} <= set(cc.columns) and cc["label"].notna().all()
    assert {"label_from", "label_to", "split_from"} <= set(fd.similarity().columns)
    assert fd.vis.component_gallery(slice="beach", save_path=str(tmp_path)) == 0
    page = (tmp_path / "components.html").read_text()
    assert "beach_" in page and "flowers_00" not in page
    diff = fd.vis.similarity_gallery(slice="diff", save_path=str(tmp_path))  # fastdup's: one row per image
    assert list(diff.columns[:3]) == ["from", "to", "distance"] and {"label", "label2", "score", "length"} <= set(
        diff.columns)
    assert diff["score"].is_monotonic_increasing and (diff["length"] == diff["to"].apply(len)).all()
    row = diff.iloc[0]
    assert row["score"] == 100 * np.mean([other == row["label"][0] for other in row["label2"]])
    assert {DATA + f for f in truth["wrong_labels"]} & set(diff.loc[diff["score"] < 50, "filename_from"])
    assert fd.vis.component_gallery(group_by="label", save_path=str(tmp_path / "by_label")) == 0
    assert fd.vis.duplicates_gallery(label_col="split", lazy_load=True, max_width=900,
                                     save_path=str(tmp_path / "lazy")) == 0
    lazy = (tmp_path / "lazy" / "duplicates.html").read_text()
    assert "max-width:900px" in lazy and "data:image" not in lazy
    with pytest.raises(ConfigError, match="label_col must be"):
        fd.vis.duplicates_gallery(label_col="colour")


def test_object_detection_notebook(cwd, truth):
    """Boxes are cropped and analysed as instances: one feature row and one label per box."""
    files = [DATA + a for a, _ in truth["exact_duplicates"]] + [DATA + b for _, b in truth["exact_duplicates"]]
    rows = [(f, 10, 20, 120, 100, "left") for f in files] + [(f, 160, 100, 150, 130, "right") for f in files]
    rows.append((files[0], 5000, 10, 20, 20, "outside"))
    coco = pd.DataFrame(rows, columns=["filename", "col_x", "row_y", "width", "height", "label"]).assign(split="train")
    fd = fastdup.create(work_dir="od_work_dir", input_dir=".")
    assert fd.run(annotations=coco, overwrite=True, num_images=10000, print_summary=False) == 0
    stats = fd.img_stats()
    assert len(stats) == 2 * len(files) and set(stats["filename"]) == set(files)
    assert stats["crop_filename"].str.startswith("od_work_dir/crops/").all() and set(stats["label"]) == {"left", "right"}
    assert set(zip(stats["img_w"], stats["img_h"])) == {(120, 100), (150, 130)}
    sim = fd.similarity()  # the same box of byte-identical images is a duplicate
    same_box = sim[(sim["label_from"] == sim["label_to"]) & (sim["distance"] > 0.99)]
    assert {frozenset(p) for p in zip(same_box["filename_from"], same_box["filename_to"])} >= {
        frozenset((DATA + a, DATA + b)) for a, b in truth["exact_duplicates"]}
    assert fd.summary(verbose=False)[0] == f"Dataset contains {2 * len(files)} objects"
    assert fd.vis.component_gallery(metric="size", max_width=900) == 0
    assert "box_outside_image" in open("od_work_dir/crops.csv").read()
    with pytest.raises(ConfigError, match="bounding-box annotations need columns"):
        fd.run(annotations=coco.drop(columns="height"))


def test_image_search_and_feature_vectors(fd, truth):
    query = DATA + truth["exact_duplicates"][0][0]
    copy = DATA + truth["exact_duplicates"][0][1]
    assert fd.init_search(3) == 0
    found = fd.search(query)
    assert list(found.columns) == ["from", "to", "distance", "index"] and len(found) == 3
    assert {query, copy} <= set(found["to"].head(2)) and found["distance"].iloc[1] > 0.99
    assert fastdup.init_search(2, "fastdup_work_dir") == 0
    assert set(fastdup.search(copy)["to"]) == {query, copy}
    vector, files = fd.feature_vector(query)
    assert vector.shape == (1, 1280) and files == [query]
    vectors, files = fd.feature_vectors([query, copy, DATA + "bad/empty.jpg"])
    assert vectors.shape == (2, 1280) and files == [query, copy] and float(vectors[0] @ vectors[1]) > 0.999
    assert fd.vector_search(vec=vector[0])["to"].iloc[0] in (query, copy)


def test_v0_files_and_binary_features(cwd, truth, tmp_path):
    assert fastdup.run(DATA, work_dir="v0_work_dir", nearest_neighbors_k=5, turi_param="ccthreshold=0.9") == 0
    sim = pd.read_csv("v0_work_dir/similarity.csv")
    assert list(sim.columns) == ["from", "to", "distance"] and sim["from"].str.startswith(DATA).all()
    pairs = {frozenset(p) for p in zip(sim["from"], sim["to"])}
    assert all(frozenset((DATA + a, DATA + b)) in pairs for a, b in truth["exact_duplicates"])
    assert list(pd.read_csv("v0_work_dir/outliers.csv").columns) == ["from", "to", "distance"]
    assert list(pd.read_csv("v0_work_dir/component_info.csv").columns) == ["component_id", "count", "mean", "min",
                                                                           "max"]
    assert list(pd.read_csv("v0_work_dir/atrain_features.bad.csv").columns) == ["index", "filename", "error_code",
                                                                                "filesize"]
    assert os.path.getsize("v0_work_dir/nnf.index") > 0
    files, matrix = fastdup.load_binary_feature("v0_work_dir/atrain_features.dat")
    assert matrix.shape == (len(files), 1280) and files[0].startswith(DATA)
    with pytest.raises(ConfigError, match="d=576 does not match"):
        fastdup.load_binary_feature("v0_work_dir", d=576)
    assert fastdup.save_binary_feature(str(tmp_path / "saved"), files, np.asarray(matrix)) == 0
    again, loaded = fastdup.load_binary_feature(str(tmp_path / "saved"), d=1280)
    assert again == files and np.array_equal(loaded, matrix)
    assert fastdup.create_similarity_gallery("v0_work_dir/similarity.csv", save_path=str(tmp_path)).shape[1] >= 3
    path, labels = fastdup.generate_sprite_image(files[:6], 6, str(tmp_path / "sprite"), get_label_func=len)
    assert path.endswith("sprite.png") and os.path.getsize(path) > 0 and labels == [len(f) for f in files[:6]]


def test_test_dir_on_fresh_work_dir(cwd, truth):
    assert fastdup.run(DATA + "train", work_dir="tt_work_dir", test_dir=DATA + "test") == 0
    sim = pd.read_csv("tt_work_dir/similarity.csv")
    pairs = set(zip(sim["from"], sim["to"]))
    assert {(DATA + test, DATA + train) for train, test in truth["leakage"]} <= pairs
    assert sim["from"].str.startswith(DATA + "test/").all() and sim["to"].str.startswith(DATA + "train/").all()
