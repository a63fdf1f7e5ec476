"""Tests for the per-CPU choice of the built-in model (fp32 or int8) by measurement."""

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dup_pipeline.core.config import ModelConfig, PipelineConfig
from dup_pipeline.core.embed import choice as C
from dup_pipeline.core.embed.model import FP32_MODEL, INT8_FULL_MODEL, ModelSpec, default_model_spec
from dup_pipeline.core.errors import WorkDirError
from dup_pipeline.core.pipeline import run_pipeline
from dup_pipeline_tests.conftest import noise_image, save_image

GOOD = C.Agreement(cosine_min=0.99, cosine_mean=0.995, copy_shift=0.01, top1_agree=True, speedup=1.7)
SLOW = replace(GOOD, speedup=1.1)
INEXACT = replace(GOOD, cosine_min=0.84, cosine_mean=0.96)


@pytest.fixture(scope="module")
def fp32() -> ModelSpec:
    return default_model_spec()


@pytest.fixture
def cache(tmp_path: Path, fp32: ModelSpec, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh model cache holding the fp32 model; int8 candidates stand in as fp32 (no quantizing)."""
    (tmp_path / Path(fp32.path).name).symlink_to(fp32.path)
    local = replace(fp32, path=str(tmp_path / Path(fp32.path).name))
    monkeypatch.setattr(C, "default_model_spec", lambda: local)
    monkeypatch.setattr(C, "int8_model_spec", lambda reduce_range=True: local)
    return tmp_path


def _measured_as(monkeypatch: pytest.MonkeyPatch, *agreements: C.Agreement, delay: float = 0.0) -> list[int]:
    """Make measure() return ``agreements`` in turn; the returned list counts the calls."""
    calls: list[int] = []

    def fake(fp32: ModelSpec, candidate: ModelSpec, rounds: int = C.ROUNDS) -> C.Agreement:
        time.sleep(delay)
        calls.append(1)
        return agreements[len(calls) - 1]
    monkeypatch.setattr(C, "measure", fake)
    return calls


def test_a_model_against_itself_agrees_but_is_not_faster(fp32: ModelSpec) -> None:
    agreement = C.measure(fp32, fp32, rounds=5)
    assert agreement.cosine_min > 0.9999 and agreement.copy_shift < 1e-5 and agreement.top1_agree
    assert 0.6 < agreement.speedup < C.MIN_SPEEDUP
    assert not agreement.qualifies


def test_a_model_fed_differently_does_not_agree(fp32: ModelSpec) -> None:
    unit = replace(fp32, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
    agreement = C.measure(fp32, unit, rounds=1)
    assert agreement.cosine_min < C.MIN_COSINE_MIN
    assert not agreement.qualifies


def test_probe_images_are_deterministic_pairs() -> None:
    first, second = C.probe_images(), C.probe_images()
    assert len(first) == 16
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, second, strict=True))
    assert first[8].width == first[0].width * 4 // 5


def test_qualifying_int8_is_chosen_once_and_cached(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _measured_as(monkeypatch, GOOD)
    spec = C.auto_model_spec()
    assert spec.description == f"{INT8_FULL_MODEL} (auto: agreement 0.995 (min 0.990), 1.70x)"
    assert C.auto_model_spec().description == spec.description
    assert len(calls) == 1
    (decision,) = cache.glob("model-choice-*.json")
    assert '"model": "efficientnet_lite0_int8_full"' in decision.read_text()


def test_fp32_when_no_candidate_qualifies(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _measured_as(monkeypatch, INEXACT, SLOW)
    spec = C.auto_model_spec()
    assert len(calls) == 2
    assert spec.path == C.default_model_spec().path
    assert spec.description.startswith(f"{FP32_MODEL} (auto: int8 below thresholds: "
                                       f"efficientnet_lite0_int8_full agreement 0.960 (min 0.840)")
    assert "efficientnet_lite0_int8 agreement 0.995 (min 0.990), 1.10x" in spec.description


def test_concurrent_first_uses_measure_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _measured_as(monkeypatch, GOOD, SLOW, delay=0.5)
    results: list[str] = []
    def first_use() -> None:
        results.append(C.auto_model_spec().description)
    threads = [threading.Thread(target=first_use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 3


def test_decision_is_per_cpu_and_onnxruntime(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fp32 = C.default_model_spec()
    here = C.decision_path(fp32)
    monkeypatch.setattr(C.ort, "__version__", "0.0.1")
    other_ort = C.decision_path(fp32)
    monkeypatch.setattr(C, "cpu_identity", lambda: {"flags": "avx2 sse4_2"})
    other_cpu = C.decision_path(fp32)
    assert len({here, other_ort, other_cpu}) == 3
    assert here.parent == other_cpu.parent == cache


def test_explicit_model_path_never_measures(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                            fp32: ModelSpec) -> None:
    _measured_as(monkeypatch)  # any call would fail: no agreement to return
    assert ModelConfig(model_path=FP32_MODEL).spec().description == f"{FP32_MODEL} (model_path)"
    assert ModelConfig(model_path=fp32.path, output_name="embedding").spec().label == Path(fp32.path).name
    assert not list(cache.glob("model-choice-*.json"))


def test_unreadable_decision_is_measured_again(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _measured_as(monkeypatch, SLOW, SLOW, GOOD)
    C.auto_model_spec()
    (decision,) = cache.glob("model-choice-*.json")
    decision.write_text("{not json")
    assert C.auto_model_spec().description.startswith(f"{INT8_FULL_MODEL} (auto:")
    assert len(calls) == 3


def test_switching_the_auto_choice_re_embeds_every_image(
    tmp_path: Path, fp32: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    int8 = C.int8_model_spec(reduce_range=False)  # built once in the shared model cache
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / Path(fp32.path).name).symlink_to(fp32.path)
    local = replace(fp32, path=str(cache / Path(fp32.path).name))
    monkeypatch.setattr(C, "default_model_spec", lambda: local)
    monkeypatch.setattr(C, "int8_model_spec", lambda reduce_range=True: int8)
    images = tmp_path / "images"
    for i in range(5):
        save_image(images / f"{i}.png", noise_image(i))
    config = PipelineConfig(str(images), str(tmp_path / "work"), range_size=2)
    _measured_as(monkeypatch, INEXACT, SLOW, GOOD)
    first = run_pipeline(config, run_mode=1)
    assert first.features.model.startswith(f"{FP32_MODEL} (auto: int8 below thresholds")
    assert f"model: {first.features.model}" in "\n".join(first.lines())
    for decision in cache.glob("model-choice-*.json"):
        decision.unlink()  # e.g. a new onnxruntime: measured again, int8 qualifies now
    second = run_pipeline(config, run_mode=1)
    assert second.features.model.startswith(f"{INT8_FULL_MODEL} (auto: agreement")
    assert second.embedded == first.embedded == 5
    assert second.features.model_id != first.features.model_id
    assert Path(int8.path).stem in second.features.model_id


def test_vectors_of_two_models_are_never_mixed(tmp_path: Path) -> None:
    images = tmp_path / "images"
    for i in range(6):
        save_image(images / f"{i}.png", noise_image(i))
    work = str(tmp_path / "work")
    first = run_pipeline(PipelineConfig(str(images), work, range_size=3, model=ModelConfig(model_path=FP32_MODEL)),
                         run_mode=1)
    assert first.features.matrix.shape[0] == 6
    int8 = PipelineConfig(str(images), work, range_size=3, model=ModelConfig(model_path=INT8_FULL_MODEL))
    with pytest.raises(WorkDirError, match=r"range 3-5 of .* holds embeddings of model efficientnet_lite0-"):
        run_pipeline(int8, run_mode=1, max_offset=3)  # re-embeds range 0-2 only
    assert run_pipeline(int8, run_mode=1).features.matrix.shape[0] == 6  # every range: one model again
