import dagster as dg
import polars as pl

from dup_pipeline.dagster_defs.audit import materialize_dataset
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline.dagster_defs.resources import DatasetResource


def _latest(instance: dg.DagsterInstance, *path: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_similarity_assets_and_run_modes_as_jobs(demo_dataset, tmp_path):
    train = DatasetResource(input_dir=str(demo_dataset.images / "train"), work_dir=str(tmp_path / "train"))
    test = DatasetResource(input_dir=str(demo_dataset.images / "test"), work_dir=str(tmp_path / "test"),
                           compare_to="train")
    defs = build_definitions({"train": train, "test": test})
    instance = dg.DagsterInstance.ephemeral()
    materialize_dataset(defs, "train", instance)
    meta = _latest(instance, "train", "similarity")
    assert meta["pairs"] > 0 and meta["threshold"] == 0.8
    index = _latest(instance, "train", "faiss_index")
    assert index["added_this_run"] > 0 and index["faiss_mode"] == "Flat"  # the default auto, resolved
    assert _latest(instance, "train", "outliers")["outliers"] >= 1
    assert _latest(instance, "train", "components")["components_with_2_or_more"] >= 4
    # run mode 4: the existing index as it is
    result = defs.resolve_job_def("train_similarity_existing_index_job").execute_in_process(instance=instance)
    assert dg.AssetKey(["train", "faiss_index"]) not in {
        e.asset_key for e in result.get_asset_materialization_events()}
    # run mode 3: the test set searched in the training index
    materialize_dataset(defs, "test", instance)
    defs.resolve_job_def("test_cross_similarity_job").execute_in_process(instance=instance)
    pairs = pl.read_parquet(tmp_path / "test" / "cross_similarity.parquet")
    root = str(demo_dataset.images) + "/"
    found = {(a.removeprefix(root), b.removeprefix(root)) for a, b in zip(pairs["filename_to"], pairs["filename_from"])}
    assert {tuple(p) for p in demo_dataset.ground_truth()["leakage"]} <= found
