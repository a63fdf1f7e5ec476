"""Tests for the torch-free EfficientNet-Lite0 checkpoint -> ONNX converter."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from dup_pipeline.core.embed import effnet_lite0 as E

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(E.CACHE_DIR_ENV, str(tmp_path_factory.mktemp("cache")))
        return E.default_model_path()


@pytest.fixture(scope="module")
def session(model_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    embedding, logits = session.run(["embedding", "logits"], {"images": x})
    return embedding, logits


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# -- checkpoint loading -----------------------------------------------------


class _Evil:
    def __init__(self, func: object, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.func, (self.arg,)


def _legacy_file(path: Path, sys_info: object, state: object) -> Path:
    header = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    path.write_bytes(
        header + pickle.dumps(sys_info, protocol=2) + pickle.dumps(state, protocol=2) + pickle.dumps([])
    )
    return path


@pytest.mark.parametrize("where", ["sys_info", "state_dict"])
@pytest.mark.parametrize("func", ["os.system", "builtins.eval"])
def test_restricted_unpickler_refuses_code(tmp_path: Path, where: str, func: str) -> None:
    marker = tmp_path / "pwned"
    if func == "os.system":
        evil = _Evil(os.system, f"touch {marker}")
    else:
        evil = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
    ok_sys_info = {"protocol_version": 1001, "little_endian": True}
    ckpt = _legacy_file(
        tmp_path / "evil.pth",
        evil if where == "sys_info" else ok_sys_info,
        evil if where == "state_dict" else {},
    )
    # Protocol 2 spells these posix.system / __builtin__.eval.
    with pytest.raises(pickle.UnpicklingError, match=rf"forbidden global \w+\.{func.split('.')[1]}$"):
        E.load_checkpoint(ckpt)
    assert not marker.exists()


def test_restricted_unpickler_refuses_unknown_torch_global() -> None:
    payload = b"\x80\x02ctorch\nload\nq\x00."
    with pytest.raises(pickle.UnpicklingError, match="torch.load"):
        E._RestrictedUnpickler(io.BytesIO(payload)).load()


def test_load_checkpoint_reads_real_state_dict() -> None:
    state = E.load_checkpoint(E.checkpoint_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(np.isfinite(v).all() for v in state.values())
    assert not any("_se_" in k for k in state)


def test_truncated_checkpoint_is_rejected(tmp_path: Path) -> None:
    data = E.checkpoint_path().read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated"):
        E.load_checkpoint(path)


def test_zip_checkpoint_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "new_style.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match="zip"):
        E.load_checkpoint(path)


# -- model file --------------------------------------------------------------


def test_same_padding_is_tensorflow_style() -> None:
    assert E._same_pads(224, 3, 2) == (0, 1)
    assert E._same_pads(56, 5, 2) == (1, 2)
    assert E._same_pads(14, 5, 1) == (2, 2)
    assert E._same_pads(7, 1, 1) == (0, 0)


def test_default_model_path_caches_atomically(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(E.CACHE_DIR_ENV, str(model_path.parent))
    assert model_path.name.endswith(f"-v{E.CONVERTER_VERSION}.onnx")
    assert E.sha256_prefix(E.checkpoint_path()) in model_path.name
    mtime = model_path.stat().st_mtime_ns
    assert E.default_model_path() == model_path
    assert model_path.stat().st_mtime_ns == mtime
    assert [p.name for p in model_path.parent.iterdir()] == [model_path.name]


def test_default_model_path_concurrent_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(E.CACHE_DIR_ENV, str(tmp_path / "fresh"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda _: E.default_model_path(), range(2)))
    assert paths[0] == paths[1]
    assert [p.name for p in (tmp_path / "fresh").iterdir()] == [paths[0].name]
    onnx.checker.check_model(str(paths[0]))


def test_model_is_valid_and_has_dynamic_batch(model_path: Path, session: ort.InferenceSession) -> None:
    onnx.checker.check_model(str(model_path), full_check=True)
    model = onnx.load(str(model_path))
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["embedding", "logits"]

    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 224, 224)).astype(np.float32)
    emb3, logits3 = _run(session, x)
    assert emb3.shape == (3, 1280) and logits3.shape == (3, 1000)
    emb1, logits1 = _run(session, x[1:2])
    assert emb1.shape == (1, 1280) and logits1.shape == (1, 1000)
    np.testing.assert_allclose(emb1[0], emb3[1], atol=1e-4)
    np.testing.assert_allclose(logits1[0], logits3[1], atol=1e-4)
    assert (emb3 >= 0).all() and not np.allclose(np.linalg.norm(emb3, axis=1), 1.0)


# Reference values from a torch 2.13 forward pass of the efficientnet_lite_pytorch
# EfficientNet('efficientnet-lite0') loaded with the same checkpoint (strict=True),
# on the analytic input below. Wrong padding, BN folding or strides move these by >1.
def _synthetic_input() -> np.ndarray:
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    planes = [np.sin(xx / 7.0) * np.cos(yy / 11.0), np.cos((xx + yy) / 13.0), np.sin(xx * yy / 3000.0)]
    return np.stack(planes)[None].astype(np.float32)


_REF_TOP5 = [906, 902, 443, 591, 636]
_REF_TOP5_LOGITS = [10.8461, 6.85732, 5.98646, 5.60222, 5.19533]
_REF_FIRST_LOGITS = [0.9002, 2.92807, -0.85828, -1.10646, -0.84696, 0.74657, -0.98214, 0.51484]
_REF_EMBEDDING_SUM = 228.78369


def test_matches_torch_reference(session: ort.InferenceSession) -> None:
    emb, logits = _run(session, _synthetic_input())
    assert list(np.argsort(-logits[0])[:5]) == _REF_TOP5
    np.testing.assert_allclose(logits[0][_REF_TOP5], _REF_TOP5_LOGITS, atol=1e-3)
    np.testing.assert_allclose(logits[0][:8], _REF_FIRST_LOGITS, atol=1e-3)
    assert float(emb[0].sum(dtype=np.float64)) == pytest.approx(_REF_EMBEDDING_SUM, abs=1e-2)


# -- real pictures -----------------------------------------------------------


def _chelsea() -> Image.Image:
    return Image.fromarray(skimage_data.chelsea())


def _coffee() -> Image.Image:
    return Image.fromarray(skimage_data.coffee())


def test_known_pictures_top5(session: ort.InferenceSession) -> None:
    _, logits = _run(session, E.preprocess([_chelsea(), _coffee()]))
    cat_top5, coffee_top5 = (set(np.argsort(-row)[:5].tolist()) for row in logits)
    assert int(np.argmax(logits[0])) in range(281, 286)
    assert len(cat_top5 & set(range(281, 286))) >= 2
    assert int(np.argmax(logits[1])) in {967, 968, 504}
    assert 967 in coffee_top5


def test_embedding_is_robust_but_discriminative(session: ort.InferenceSession) -> None:
    cat = _chelsea()
    smaller = cat.resize((int(cat.width * 0.8), int(cat.height * 0.8)), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    smaller.save(buf, format="JPEG", quality=70)
    near_dup = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    emb, _ = _run(session, E.preprocess([cat, near_dup, _coffee()]))
    e = _unit(emb)
    assert float(e[0] @ e[1]) > 0.9
    assert float(e[0] @ e[2]) < 0.5


# -- preprocessing and class names --------------------------------------------


def test_preprocess_layout_and_scaling() -> None:
    pixels = np.zeros((2, 50, 80, 3), dtype=np.uint8)
    pixels[0, ..., 0] = 255  # pure red
    pixels[1] = 127
    x = E.preprocess(pixels)
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[0, 0], 1.0)
    np.testing.assert_array_equal(x[0, 1:], -127.0 / 128.0)
    np.testing.assert_array_equal(x[1], 0.0)
    from_pil = E.preprocess([Image.fromarray(p) for p in pixels])
    np.testing.assert_array_equal(from_pil, x)
    gray = E.preprocess([Image.fromarray(pixels[1, ..., 0], mode="L")])
    np.testing.assert_array_equal(gray, x[1:])


def test_preprocess_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError):
        E.preprocess(np.zeros((1, 10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        E.preprocess(np.zeros((10, 10, 3), dtype=np.uint8))


def test_imagenet_class_names() -> None:
    names = E.imagenet_class_names()
    assert len(names) == 1000
    assert names[0] == "tench, Tinca tinca"
    assert names[281] == "tabby, tabby cat"
    assert names[504] == "coffee mug"
    assert names[967] == "espresso"
    assert names[999].startswith("toilet tissue")
