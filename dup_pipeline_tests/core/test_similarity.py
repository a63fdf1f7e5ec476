import json
import shutil

import polars as pl
import pytest

import dup_pipeline.core.index as index_module
from dup_pipeline.core.errors import WorkDirError
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.similarity import GraphConfig
from dup_pipeline.core.sources import reading
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline_tests.conftest import noise_image, save_image


def _names(demo_dataset, df: pl.DataFrame, columns=("filename_from", "filename_to")) -> set[tuple[str, ...]]:
    root = str(demo_dataset.images) + "/"
    return {tuple(sorted(r[c].removeprefix(root) for c in columns)) for r in df.iter_rows(named=True)}


def _planted_pairs(truth) -> set[tuple[str, str]]:
    """Planted pairs, plus pairs among copies of the same original (they are near-duplicates too)."""
    groups: dict[str, set[str]] = {}
    for original, copy, *_ in truth["near_duplicates"] + truth["leakage"] + truth["exact_duplicates"]:
        groups.setdefault(original, {original}).add(copy)
    return {tuple(sorted((a, b))) for g in groups.values() for a in g for b in g if a != b}


@pytest.fixture()
def flat_work(demo_run, tmp_path):
    """A copy of the demo work_dir (features already computed) to rerun the similarity stage on."""
    work = tmp_path / "work"
    shutil.copytree(demo_run.work_dir, work)
    return work


def test_default_finds_every_planted_pair(demo_dataset, demo_run):
    found = _names(demo_dataset, demo_run.graph.similarity.join(
        pl.read_parquet(f"{demo_run.work_dir}/similarity.parquet"), on=["from", "to", "distance"]))
    assert _planted_pairs(demo_dataset.ground_truth()) <= found
    sim = demo_run.graph.similarity
    assert (sim["from"] < sim["to"]).all() and sim["distance"].is_sorted(descending=True)
    assert sim.select("from", "to").is_unique().all()


def test_flat_mode_2_gives_exactly_the_planted_pairs_without_decoding(demo_dataset, flat_work, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("run mode 2 must not decode images")

    for name in ("decode_image", "decode_bytes"):  # every decode of the scan goes through the source layer
        monkeypatch.setattr(reading, name, no_decoding)
    (flat_work / "stages" / "similarity.json").unlink()  # else fresh: the default (auto) built Flat too
    config = PipelineConfig(demo_dataset.images, str(flat_work), graph=GraphConfig(faiss_mode="Flat"))
    summary = run_pipeline(config, run_mode=2)
    pairs = pl.read_parquet(flat_work / "similarity.parquet")
    assert _names(demo_dataset, pairs) == _planted_pairs(demo_dataset.ground_truth())
    assert summary.graph.recomputed and summary.graph.index_rows_added == 0  # the auto run's Flat index, reused


@pytest.mark.parametrize("mode", ["IVF4,SQ8", "PCA64,IVF4,Flat"])
def test_approximate_mode_is_reranked_to_exact_similarities(demo_dataset, flat_work, tmp_path, mode):
    """8-bit codes or a PCA (scores distorted; nprobe=2 of 4 lists) list every planted copy, each pair with
    the exact similarity the Flat run writes."""
    sq_work = tmp_path / "sq_work"
    shutil.copytree(flat_work, sq_work)
    flat_config = PipelineConfig(demo_dataset.images, str(flat_work), graph=GraphConfig(faiss_mode="Flat"))
    run_pipeline(flat_config, run_mode=2)
    run_pipeline(PipelineConfig(demo_dataset.images, str(sq_work),
                                graph=GraphConfig(faiss_mode=mode, faiss_param="nprobe=2")), run_mode=2)
    flat, sq = (pl.read_parquet(w / "similarity.parquet") for w in (flat_work, sq_work))
    assert _names(demo_dataset, sq) >= _planted_pairs(demo_dataset.ground_truth())
    both = sq.join(flat, on=["from", "to"], suffix="_flat")
    assert both.height == sq.height == flat.height
    assert (both["distance"] - both["distance_flat"]).abs().max() < 1e-6


def test_auto_resolves_by_size_records_the_mode_and_keeps_only_its_params(flat_work):
    config = GraphConfig(faiss_param="nprobe=8")
    assert config.faiss_mode == "auto"
    assert config.resolved(10, 1280).faiss_mode == "Flat"  # exact below AUTO_EXACT_BELOW: no parameters
    assert config.resolved(10, 1280).search_params == ""
    big = config.resolved(1_000_000, 1280)
    assert big.faiss_mode == "PCA256,IVF4096,Flat" and big.search_params == "nprobe=8"
    assert GraphConfig().resolved(1_000_000, 1280).search_params == "nprobe=32"
    assert GraphConfig(faiss_mode="Flat").resolved(1_000_000, 1280).faiss_mode == "Flat"
    allowed = "nprobe, max_codes, efSearch, efConstruction"
    with pytest.raises(ValueError, match=f"faiss_mode='auto' may set only {allowed}"):
        GraphConfig(faiss_param="ht=4")
    with pytest.warns(UserWarning, match="faiss_param efSearch has no effect with faiss_mode='auto'"):
        hnsw_habit = GraphConfig(faiss_param="efSearch=100,nprobe=8")  # fastdup's default index is HNSW32
    assert hnsw_habit.resolved(10, 1280).search_params == ""
    assert hnsw_habit.resolved(1_000_000, 1280).search_params == "nprobe=8"
    # the demo run (default config) recorded the concrete mode it built
    assert json.loads(WorkDir(flat_work).index_meta.read_text())["tag"]["faiss_mode"] == "Flat"


def test_auto_above_its_threshold_builds_the_pca_ivf_index_and_writes_flat_similarities(
        demo_dataset, flat_work, tmp_path, monkeypatch):
    auto_work = tmp_path / "auto_work"
    shutil.copytree(flat_work, auto_work)
    monkeypatch.setattr(index_module, "AUTO_EXACT_BELOW", 10)  # the demo set counts as large,
    monkeypatch.setattr(index_module, "AUTO_PCA_DIM", 32)  # and its 80 vectors can train a 32-d PCA
    (auto_work / "stages" / "faiss_index.json").unlink()  # else fresh: same features and config
    summary = run_pipeline(PipelineConfig(demo_dataset.images, str(auto_work)), run_mode=2)
    mode = json.loads(WorkDir(auto_work).index_meta.read_text())["tag"]["faiss_mode"]
    n = summary.graph.index_rows_added
    assert mode == index_module.auto_faiss_mode(n, 1280) and mode.startswith("PCA32,IVF")
    flat_config = PipelineConfig(demo_dataset.images, str(flat_work), graph=GraphConfig(faiss_mode="Flat"))
    run_pipeline(flat_config, run_mode=2)
    flat, auto = (pl.read_parquet(w / "similarity.parquet") for w in (flat_work, auto_work))
    both = auto.join(flat, on=["from", "to"], suffix="_flat")
    assert both.height == auto.height == flat.height
    assert (both["distance"] - both["distance_flat"]).abs().max() < 1e-6


def test_outliers_one_row_per_image_and_planted_first(demo_dataset, demo_run):
    out = pl.read_parquet(f"{demo_run.work_dir}/outliers.parquet")
    assert out["outlier"].is_unique().all()
    assert out.height == round(0.05 * demo_run.good)
    root = str(demo_dataset.images) + "/"
    top = {f.removeprefix(root) for f in out["filename_outlier"].head(2)}
    assert top == set(demo_dataset.ground_truth()["outliers"])
    assert out["distance"].is_sorted()


def test_components_group_planted_copies(demo_dataset, demo_run):
    cc = pl.read_parquet(f"{demo_run.work_dir}/connected_components.parquet")
    root = str(demo_dataset.images) + "/"
    component_of = {f.removeprefix(root): c for f, c in zip(cc["filename"], cc["component_id"])}
    truth = demo_dataset.ground_truth()
    for original, copy, *_ in truth["near_duplicates"] + truth["exact_duplicates"] + truth["leakage"]:
        assert component_of[original] == component_of[copy]
    assert cc.columns[:6] == ["__id", "component_id", "count", "mean_distance", "min_distance", "max_distance"]
    info = pl.read_csv(f"{demo_run.work_dir}/components_info.csv")
    groups = info.filter(pl.col("count") > 1)
    assert (groups["min_exact_similarity"] >= GraphConfig().ccthreshold).all()
    ranks = pl.read_parquet(f"{demo_run.work_dir}/pagerank_degree.parquet")
    assert ranks.height == demo_run.good and abs(ranks["pagerank"].sum() - 1) < 1e-6
    degree = dict(zip([f.removeprefix(root) for f in ranks["filename"]], ranks["degree"]))
    assert degree[truth["near_duplicates"][0][0]] == 3  # the original and its three copies
    assert degree[truth["outliers"][0]] == 0


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "manhattan"])
def test_other_distances_find_the_exact_copies(demo_dataset, flat_work, distance):
    config = PipelineConfig(demo_dataset.images, str(flat_work),
                            graph=GraphConfig(faiss_mode="Flat", distance=distance, threshold=0.5))
    run_pipeline(config, run_mode=2)
    pairs = pl.read_parquet(flat_work / "similarity.parquet")
    exact = {tuple(sorted(p)) for p in demo_dataset.ground_truth()["exact_duplicates"]}
    top = _names(demo_dataset, pairs.filter(pl.col("distance") >= 0.999))
    assert exact <= top


def test_bad_graph_parameters_name_the_parameter(demo_dataset, flat_work):
    with pytest.raises(ValueError, match="distance must be one of"):
        GraphConfig(distance="hamming")
    with pytest.raises(ValueError, match="threshold must be in"):
        GraphConfig(threshold=0)
    config = PipelineConfig(demo_dataset.images, str(flat_work), graph=GraphConfig(distance="manhattan", faiss_mode="PQ16"))
    with pytest.raises(ValueError, match="manhattan.*Flat"):
        run_pipeline(config, run_mode=2)
    with pytest.raises(ValueError, match="run_mode must be one of"):
        run_pipeline(config, run_mode=7)


def test_faiss_param_is_checked_in_the_config_and_keeps_the_default_efsearch():
    with pytest.raises(ValueError, match=r"faiss_param efSearch must be an integer in \[1, 1000000\]"):
        GraphConfig(faiss_param="efSearch=0")
    with pytest.raises(ValueError, match="faiss_param nprobe must be an integer"):
        GraphConfig(faiss_mode="IVF16,Flat", faiss_param="nprobe=0")
    build_only = GraphConfig(faiss_mode="HNSW32", faiss_param="efConstruction=80")
    assert build_only.search_params == "efSearch=64,efConstruction=80"  # faiss's efSearch=16 loses pairs
    assert build_only.index_tag["build_params"] == ["efConstruction=80"]
    assert GraphConfig(faiss_mode="HNSW32", faiss_param="efSearch=128").search_params == "efSearch=128"
    assert GraphConfig(faiss_mode="IVF16,Flat", faiss_param="nprobes=4").search_params == "nprobe=4"
    assert GraphConfig(faiss_mode="Flat").search_params == ""


def test_run_mode_3_reports_train_test_pairs(demo_dataset, tmp_path):
    train = PipelineConfig(demo_dataset.images / "train", str(tmp_path / "train_work"))
    run_pipeline(train)
    summary = run_pipeline(train, run_mode=3, test_input=demo_dataset.images / "test")
    leaks = _names(demo_dataset, summary.cross)
    assert {tuple(sorted(p)) for p in demo_dataset.ground_truth()["leakage"]} <= leaks
    assert pl.read_csv(tmp_path / "train_work" / "cross_similarity.csv").columns == ["from", "to", "distance"]
    with pytest.raises(WorkDirError, match="existing index"):
        run_pipeline(PipelineConfig(demo_dataset.images, str(tmp_path / "empty")), run_mode=3,
                     test_input=demo_dataset.images / "test")


def test_run_mode_3_with_an_approximate_index_reports_exact_similarities(demo_dataset, tmp_path):
    crosses = []
    for mode, param in (("Flat", ""), ("IVF4,SQ8", "nprobe=1")):
        train = PipelineConfig(demo_dataset.images / "train", str(tmp_path / mode),
                               graph=GraphConfig(faiss_mode=mode, faiss_param=param))
        run_pipeline(train)
        crosses.append(run_pipeline(train, run_mode=3, test_input=demo_dataset.images / "test").cross)
    flat, sq = crosses
    assert {tuple(sorted(p)) for p in demo_dataset.ground_truth()["leakage"]} <= _names(demo_dataset, sq)
    both = sq.join(flat, on=["from", "to"], suffix="_flat")
    assert both.height == sq.height == flat.height
    assert (both["distance"] - both["distance_flat"]).abs().max() < 1e-6


def test_rerun_recomputes_nothing_and_new_images_extend_the_index(tmp_path):
    images = tmp_path / "images"
    for i in range(6):
        save_image(images / f"{i}.png", noise_image(i, (64, 64)))
    config = PipelineConfig(images, str(tmp_path / "work"), range_size=4)
    first = run_pipeline(config)
    assert first.graph.recomputed and first.graph.index_rows_added == 6
    again = run_pipeline(config)
    assert not again.graph.recomputed and again.embedded == 0
    save_image(images / "copy.png", noise_image(2, (64, 64)).transpose(0))  # a mirrored copy of 2.png
    third = run_pipeline(config)
    assert third.embedded == 1 and third.graph.recomputed and third.graph.index_rows_added == 1
