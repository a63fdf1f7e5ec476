"""Adding images to a work_dir: features.dat grows in place, only the new rows are searched, and the
outputs equal a full run on the grown folder in a new work_dir.

"Equal" means: similarity.parquet, outliers.parquet, connected_components.parquet and
pagerank_degree.parquet (and knn.npz's rows, similarities and neighbours) are identical row by row,
similarities compared as exact float32 values, and features.dat is byte-identical. That holds by
construction for an exact index (Flat, what the default auto builds below 120,000 images).
"""

import json
import shutil

import numpy as np
import polars as pl
import pytest
from PIL import Image

import dup_pipeline.core.features as features_module
import dup_pipeline.core.similarity as similarity_module
from dup_pipeline.core.errors import WorkDirError
from dup_pipeline.core.features import load_binary, load_features
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline
from dup_pipeline.core.similarity import GraphConfig
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline_tests.conftest import save_image
from dup_pipeline_tests.core.test_features import _mean_color_model

TABLES = ("similarity.parquet", "outliers.parquet", "connected_components.parquet", "pagerank_degree.parquet")


def _colour(images, name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.integers(-20, 21, (24, 32, 3)), 0, 255).astype(np.uint8)
    save_image(images / name, Image.fromarray(pixels, "RGB"))


def _config(tmp_path, work: str, faiss_mode: str, distance: str = "cosine") -> PipelineConfig:
    model = ModelConfig(model_path=str(tmp_path / "m.onnx"), normalization="raw")
    graph = GraphConfig(faiss_mode=faiss_mode, nearest_neighbors_k=3, threshold=0.99, ccthreshold=0.99,
                        distance=distance)
    return PipelineConfig(tmp_path / "images", str(tmp_path / work), range_size=8, num_threads=1,
                          model=model, graph=graph)


def _assert_same_outputs(work, clean) -> None:
    for name in TABLES:
        got, expected = pl.read_parquet(work / name), pl.read_parquet(clean / name)
        assert got.equals(expected), name
    got, expected = np.load(work / "knn.npz"), np.load(clean / "knn.npz")
    for key in ("rows", "sims", "ids"):
        assert np.array_equal(got[key], expected[key], equal_nan=True), key
    assert (work / "features.dat").read_bytes() == (clean / "features.dat").read_bytes()


def _searches(monkeypatch) -> list[tuple[int, int]]:
    """(vectors in the index searched, queries) of every faiss search of the similarity stage."""
    calls, real_search, real_reranked = [], similarity_module.search, similarity_module.search_reranked

    def search(index, queries, *args, **kwargs):
        calls.append((index.ntotal, queries.shape[0]))
        return real_search(index, queries, *args, **kwargs)

    def search_reranked(index, features, *args, first=0, **kwargs):
        calls.append((index.ntotal, features.shape[0] - first))
        return real_reranked(index, features, *args, first=first, **kwargs)

    monkeypatch.setattr(similarity_module, "search", search)
    monkeypatch.setattr(similarity_module, "search_reranked", search_reranked)
    return calls


@pytest.mark.parametrize(("faiss_mode", "distance"),
                         [("Flat", "cosine"), ("auto", "cosine"), ("Flat", "manhattan")])
def test_added_images_append_in_place_search_only_new_rows_and_equal_a_full_run(tmp_path, monkeypatch,
                                                                                faiss_mode, distance):
    _mean_color_model(tmp_path / "m.onnx")
    images = tmp_path / "images"
    for i in range(30):
        _colour(images, f"a{i:02d}.png", i)
    for copy in ("a05_copy1.png", "a05_copy2.png"):  # byte-identical copies: equal similarities
        shutil.copyfile(images / "a05.png", images / copy)
    run_pipeline(_config(tmp_path, "work", faiss_mode, distance))
    work = tmp_path / "work"
    dat = work / "features.dat"
    inode, first_rows = dat.stat().st_ino, dat.read_bytes()[: 24 * 3 * 4]

    for i in range(30, 34):  # new files sort last: manifest indexes 32..35, ranges 32-39
        _colour(images, f"b{i:02d}.png", i)
    shutil.copyfile(images / "a07.png", images / "b99_copy.png")
    _colour(images, "b98_near.png", 11)  # same colour draw as a11.png: its neighbour
    writes, real_write = [], features_module._write_rows
    monkeypatch.setattr(features_module, "_write_rows", lambda path, start, parts, count, dim: (
        writes.append((path == dat, start, count)), real_write(path, start, parts, count, dim)))
    searches = _searches(monkeypatch)
    summary = run_pipeline(_config(tmp_path, "work", faiss_mode, distance))
    assert summary.embedded == 6 and summary.graph.index_rows_added == 6
    assert dat.stat().st_ino == inode and dat.read_bytes()[: 24 * 3 * 4] == first_rows
    assert writes == [(True, 32, 38)]  # ranges 0-7 .. 24-31 untouched; 32-39 written in place
    assert searches[0] == (38, 6)  # the index searched for the 6 new rows only; the 32 earlier rows compared
    assert searches[1:] == ([] if distance == "cosine" else [(6, 32)])  # with them (cosine: one product)
    assert "dirty_from" not in json.loads((work / "features.json").read_text())

    run_pipeline(_config(tmp_path, "clean", faiss_mode, distance))
    _assert_same_outputs(work, tmp_path / "clean")


def test_many_added_rows_take_the_full_search(tmp_path, monkeypatch):
    _mean_color_model(tmp_path / "m.onnx")
    images = tmp_path / "images"
    for i in range(20):
        _colour(images, f"a{i:02d}.png", i)
    run_pipeline(_config(tmp_path, "work", "Flat"))
    for i in range(20, 22):
        _colour(images, f"b{i:02d}.png", i)
    monkeypatch.setattr(similarity_module, "INCREMENTAL_MIN_ROWS", 1)  # 2 rows > max(1, 5% of 20)
    searches = _searches(monkeypatch)
    run_pipeline(_config(tmp_path, "work", "Flat"))
    assert searches == [(22, 22)]


def test_kill_while_appending_leaves_a_state_the_rerun_repairs(tmp_path, monkeypatch):
    _mean_color_model(tmp_path / "m.onnx")
    images = tmp_path / "images"
    for i in range(20):
        _colour(images, f"a{i:02d}.png", i)
    run_pipeline(_config(tmp_path, "work", "Flat"))
    for i in range(20, 26):
        _colour(images, f"b{i:02d}.png", i)
    work = WorkDir(tmp_path / "work")

    def killed(path, start, parts, count, dim):  # the process dies after writing part of the new rows
        with open(path, "r+b") as handle:
            handle.seek(start * dim * 4)
            handle.write(np.ones(5 * dim, "<f4").tobytes())
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(features_module, "_write_rows", killed)
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(_config(tmp_path, "work", "Flat"))
    with pytest.raises(WorkDirError, match="was being updated"):
        load_features(work)
    with pytest.raises(WorkDirError, match="was being updated"):
        load_binary(work.features_dat)
    run_pipeline(_config(tmp_path, "work", "Flat"))
    run_pipeline(_config(tmp_path, "clean", "Flat"))
    _assert_same_outputs(work.root, tmp_path / "clean")
    files, matrix = load_binary(work.features_dat)
    assert matrix.shape == (26, 3) and len(files) == 26


@pytest.mark.parametrize("change", ["deleted", "changed"])
def test_deleted_or_changed_image_rewrites_a_new_file_and_searches_every_row(tmp_path, monkeypatch, change):
    _mean_color_model(tmp_path / "m.onnx")
    images = tmp_path / "images"
    for i in range(20):
        _colour(images, f"a{i:02d}.png", i)
    run_pipeline(_config(tmp_path, "work", "Flat"))
    dat = tmp_path / "work" / "features.dat"
    inode, before = dat.stat().st_ino, dat.read_bytes()
    reader = np.memmap(dat, dtype=np.uint8, mode="r")  # e.g. an ImageSearch in another process
    if change == "deleted":
        (images / "a17.png").unlink()  # the last range shrinks
    else:
        _colour(images, "a09.png", 77)  # a middle range changes: committed rows would change
    searches = _searches(monkeypatch)
    run_pipeline(_config(tmp_path, "work", "Flat"))
    assert dat.stat().st_ino != inode and reader.tobytes() == before  # committed rows never change in place
    assert searches == [(dat.stat().st_size // 12,) * 2]  # every row searched again
    _assert_same_outputs(tmp_path / "work", _full_rerun(tmp_path, "work"))


def _full_rerun(tmp_path, work: str):
    """A copy of ``work`` run again without its feature matrix, index, neighbours and stage records (same
    manifest indexes as ``work``, which a new work_dir would number afresh after a deletion)."""
    clean = tmp_path / "clean"
    shutil.copytree(tmp_path / work, clean)
    for name in ("features.dat", "features.json", "faiss.index", "faiss.index.json", "knn.npz", "knn.json"):
        (clean / name).unlink()
    shutil.rmtree(clean / "stages")
    run_pipeline(_config(tmp_path, "clean", "Flat"))
    return clean


def test_facade_link_grows_with_features_dat_and_its_csv_matches(tmp_path):
    import dup_pipeline as fastdup

    images = tmp_path / "images"
    for i in range(6):
        _colour(images, f"a{i}.png", i)
    fd = fastdup.create(work_dir=str(tmp_path / "fd"), input_dir=str(images))
    assert fd.run(print_summary=False) == 0
    link, ours = tmp_path / "fd" / "atrain_features.dat", tmp_path / "fd" / "features.dat"
    inode = ours.stat().st_ino
    _colour(images, "b.png", 99)
    assert fd.run(print_summary=False) == 0
    assert ours.stat().st_ino == link.stat().st_ino == inode  # appended in place: the link is the same file
    files, matrix = fastdup.load_binary_feature(str(link))
    assert len(files) == 7 and files[-1].endswith("b.png") and matrix.shape == (7, 1280)
    assert np.array_equal(matrix, np.asarray(load_features(WorkDir(tmp_path / "fd")).matrix))
    for i in range(7):  # 14 rows of 1280: by file size alone, the stale list's 7 rows would be 2560 wide
        _colour(images, f"c{i}.png", 100 + i)
    run_pipeline(PipelineConfig(images, str(tmp_path / "fd")))  # not through the facade: its csv is stale
    with pytest.raises(WorkDirError, match="holds 14 rows of d=1280 but .* lists 7 files"):
        fastdup.load_binary_feature(str(link))
