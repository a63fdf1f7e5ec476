"""Tests for decoding a manifest slice: byte-identical files are decoded and embedded once."""

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dup_pipeline.core import scan as S
from dup_pipeline.core.embed.model import Embedder
from dup_pipeline.core.features import load_features
from dup_pipeline.core.manifest import build_manifest
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.sources import reading
from dup_pipeline.core.sources.catalog import SourceSettings, stat_files
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline_tests.conftest import noise_image, save_image


def _folder(root: Path) -> Path:
    """a.png, three byte-identical copies of it (b, c, d), e.png, a corrupt f.png and its copy g.png."""
    save_image(root / "a.png", noise_image(1))
    for name in ("b", "c", "d"):
        shutil.copy(root / "a.png", root / f"{name}.png")
    save_image(root / "e.png", noise_image(2))
    (root / "f.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    shutil.copy(root / "f.png", root / "g.png")
    return root


def test_byte_identical_rows_are_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path)
    manifest = build_manifest(stat_files(sorted(str(p) for p in root.iterdir()), SourceSettings()))
    decoded: list[str] = []
    real = reading.decode_image  # the scan decodes local files through the source layer
    monkeypatch.setattr(reading, "decode_image", lambda path, **kw: decoded.append(path) or real(path, **kw))
    prepare = lambda d: np.asarray(d.image, np.float32)  # noqa: E731
    items = list(S.process_rows(manifest, S.DecodeSettings(), 2, prepare=prepare, max_items=2))
    assert sorted(Path(p).name for p in decoded) == ["a.png", "e.png", "f.png"]
    by_name = {Path(i.row["path"]).name: i for i in items}
    assert [Path(i.row["path"]).name for i in items] == sorted(by_name)  # manifest order
    a = by_name["a.png"]
    for name in ("b.png", "c.png", "d.png"):
        copy = by_name[name]
        assert copy.tensor is None and copy.same_as == a.row["index"]
        assert copy.stats == {**a.stats, "index": copy.row["index"], "filename": copy.row["path"]}
    assert by_name["g.png"].bad is not None and by_name["g.png"].bad.reason == by_name["f.png"].bad.reason
    assert by_name["g.png"].same_as is None and by_name["e.png"].same_as is None


def test_a_copy_needing_more_than_its_source_is_decoded(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    manifest = build_manifest(stat_files(sorted(str(p) for p in root.iterdir()), SourceSettings()))
    index = dict(zip(manifest["path"].map_elements(lambda p: Path(p).name, return_dtype=pl.String),
                     manifest["index"], strict=True))
    items = list(S.process_rows(manifest, S.DecodeSettings(), 2, prepare=lambda d: np.zeros(3, np.float32),
                                prepare_for={index["b.png"], index["c.png"]}))
    by_name = {Path(i.row["path"]).name: i for i in items}
    assert by_name["a.png"].tensor is None and by_name["b.png"].tensor is not None
    assert by_name["c.png"].same_as == index["b.png"] and by_name["d.png"].same_as is None


def test_run_embeds_byte_identical_files_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path / "images")
    embedded: list[int] = []
    real = Embedder.run
    monkeypatch.setattr(Embedder, "run", lambda self, prepared, names=None: embedded.append(len(prepared))
                        or real(self, prepared, names))
    summary = run_pipeline(PipelineConfig(str(root), str(tmp_path / "work"), range_size=3), run_mode=1)
    assert sum(embedded) == 2  # a.png and e.png; b, c (a's range) and d (next range) get a's vector
    assert summary.embedded == 5 and [r.copied for r in summary.ranges] == [2, 1, 0]
    assert "5 embedded this run, 3 of them copied from byte-identical files" in "\n".join(summary.lines())
    features = load_features(WorkDir(summary.work_dir))
    names = [Path(f).name for f in features.index["filename"]]
    assert names == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    matrix = np.asarray(features.matrix)
    assert all(np.array_equal(matrix[0], matrix[i]) for i in (1, 2, 3))
    assert features.index["top_class"][0] == features.index["top_class"][1]


@pytest.mark.parametrize("max_bytes", [4 << 20, 1 << 40])
def test_decoding_ahead_is_bounded_in_bytes(tmp_path: Path, max_bytes: int) -> None:
    for i in range(40):
        save_image(tmp_path / f"{i:02}.png", noise_image(i, (32, 32)))
    manifest = build_manifest(stat_files(sorted(str(p) for p in tmp_path.iterdir()), SourceSettings()))
    prepared, ahead = [], []
    lock = threading.Lock()

    def prepare(decoded) -> np.ndarray:  # a 1 MiB model input per image
        with lock:
            prepared.append(1)
        return np.zeros(1 << 20, np.uint8)

    for consumed, _ in enumerate(S.process_rows(manifest, S.DecodeSettings(), 2, prepare=prepare,
                                                max_bytes=max_bytes), start=1):
        time.sleep(0.02)  # a slow model
        ahead.append(len(prepared) - consumed)
    if max_bytes < 1 << 30:  # 4 MiB: at most 4 decoded inputs waiting, plus the 2 per thread in the pool
        assert max(ahead) <= 4 + 2 * 2
    else:  # no byte bound: decoding runs far ahead of the slow model (up to max_items rows)
        assert max(ahead) > 12


def test_range_vectors_are_held_once(tmp_path: Path) -> None:
    """The model writes into one preallocated array; merging rows already in manifest order copies nothing."""
    from dup_pipeline.core.config import ModelConfig
    from dup_pipeline.core.range_scan import RangeFeatures, _FeatureBatcher, _merge_features

    features = ModelConfig(model_path="efficientnet_lite0", batch_size=2).feature_settings()
    batcher = _FeatureBatcher(features, capacity=6)
    images = [features.embedder.prepare(noise_image(i)) for i in range(3)]
    for i, tensor in zip((3, 5, 8), images, strict=True):
        batcher.add(i, tensor, f"{i}.png")
    fresh = batcher.result()
    assert fresh.index["index"].to_list() == [3, 5, 8]
    assert np.shares_memory(fresh.vectors, batcher.matrix)
    merged = _merge_features(None, set(), fresh)
    assert merged.vectors is fresh.vectors or np.shares_memory(merged.vectors, batcher.matrix)
    old = RangeFeatures(fresh.index.with_columns(index=pl.Series([1, 4, 9])), fresh.vectors[::-1].copy())
    both = _merge_features(old, {1, 9}, fresh)  # kept rows 1 and 9 interleave with the new 3, 5, 8
    assert both.index["index"].to_list() == [1, 3, 5, 8, 9]
    np.testing.assert_array_equal(both.vectors, np.stack([old.vectors[0], *fresh.vectors, old.vectors[2]]))


def test_new_model_borrows_across_ranges_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dup_pipeline.core.config import ModelConfig

    root = _folder(tmp_path / "images")
    work = str(tmp_path / "work")
    fp32 = ModelConfig(model_path="efficientnet_lite0")
    first = run_pipeline(PipelineConfig(str(root), work, range_size=3, model=fp32), run_mode=1)
    embedded: list[int] = []
    real = Embedder.run
    monkeypatch.setattr(Embedder, "run", lambda self, prepared, names=None: embedded.append(len(prepared))
                        or real(self, prepared, names))
    again = run_pipeline(PipelineConfig(str(root), work, range_size=3,
                                        model=ModelConfig(model_path="efficientnet_lite0_int8_full")), run_mode=1)
    assert sum(embedded) == 2  # a.png and e.png: the statistics are kept, only the embeddings are redone
    assert [r.decoded for r in again.ranges] == [3, 1, 0]  # d.png (range 3-5) is not even decoded
    matrix = np.asarray(again.features.matrix)
    assert again.features.model_id != first.features.model_id
    assert all(np.array_equal(matrix[0], matrix[i]) for i in (1, 2, 3))
    assert not np.array_equal(matrix[0], np.asarray(first.features.matrix)[0])  # the new model's vector
