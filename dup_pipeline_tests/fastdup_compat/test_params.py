"""fd.run's keywords are mapped onto the one Settings object; no default is restated in the facade."""

from dataclasses import replace

import pytest

from dup_pipeline.core.config import SETTINGS_FIELDS, Settings, fastdup_names
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.fastdup_compat.params import translate

# a valid value, different from the default, for every Settings field fd.run can set
SAMPLES = {
    "range_size": 7, "num_threads": 2, "min_side": 3, "max_pixels": 1000, "model_path": "efficientnet_lite0",
    "model_output": "embedding", "normalization": "raw", "input_size": "20,24",
    "bounding_box": "row_y=1,col_x=2,height=8,width=9", "batch_size": 5, "compute": None,  # gpu needs CUDA
    "preprocess": "squash",
    "faiss_mode": "Flat", "faiss_param": "nprobe=8", "distance": "euclidean", "nearest_neighbors_k": 4,
    "threshold": 0.75, "ccthreshold": 0.7, "lower_threshold": 0.2, "run_cc": False, "run_pagerank": False,
    "run_degree": False, "labels": "labels.csv", "labels_from_folders": True, "exclude_outliers": True,
    "exclude_wrong_labels": True, "image_issue_thresholds": "grayscale=3", "video_fps": 2.5, "read_concurrency": 4,
}


def _expected(tmp_path, **values):
    return replace(Settings(**values).pipeline_config(str(tmp_path), str(tmp_path / "w")), report=False)


def _config(tmp_path, **kwargs):
    return translate(str(tmp_path), str(tmp_path / "w"), {"annotations": None, **kwargs}).config


def test_default_keywords_give_settings_defaults(tmp_path):
    assert _config(tmp_path) == _expected(tmp_path)
    empty = {"num_threads": None, "batch_size": "", "model_path": "", "faiss_mode": "", "bounding_box": None}
    assert _config(tmp_path, **empty) == _expected(tmp_path)  # fastdup's "not given" values


def test_every_keyword_and_alias_lands_on_its_field(tmp_path):
    assert set(SAMPLES) == {f.name for f in SETTINGS_FIELDS}  # a new setting must be reachable from fd.run
    default = _expected(tmp_path)
    for name, field in fastdup_names().items():
        if SAMPLES[field] is None or name == "labels":  # fd.run takes the labels as annotations
            continue
        config = _config(tmp_path, **{name: SAMPLES[field]})
        assert config == _expected(tmp_path, **{field: SAMPLES[field]}) and config != default, name
    with pytest.raises(ConfigError, match="unknown fastdup parameter.*'labels'"):
        _config(tmp_path, labels="labels.csv")


def test_fastdup_spellings_turi_param_and_precedence(tmp_path):
    assert _config(tmp_path, nnf_param="nprobes=4") == _expected(tmp_path, faiss_param="nprobe=4")
    turi = ("ccthreshold=0.7,run_cc=0,run_pagerank=0,run_degree=1,"
            "min_input_image_height=20,min_input_image_width=15")
    assert _config(tmp_path, turi_param=turi) == _expected(
        tmp_path, ccthreshold=0.7, run_cc=False, run_pagerank=False, min_side=15)
    assert _config(tmp_path, turi_param="min_input_image_height=2").decode.min_side == 2  # width: default
    keyword_wins = _config(tmp_path, turi_param="ccthreshold=0.7", cc_threshold=0.8)
    assert keyword_wins.graph.ccthreshold == 0.8
    own_name_wins = _config(tmp_path, nnf_mode="IVF16,Flat", faiss_mode="Flat")
    assert own_name_wins.graph.faiss_mode == "Flat"
    flags = _config(tmp_path, run_cc="0", labels_from_folders=1)
    assert flags.graph.run_cc is False and flags.labels_from_folders is True
    with pytest.raises(ConfigError, match="batch_size must be an integer, got 'x'"):
        _config(tmp_path, batch_size="x")
