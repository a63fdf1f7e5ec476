"""A realistic image folder with planted problems and its ground truth, for end-to-end benchmarks.

    python benchmarks/planted_folder.py ROOT --n 500 [--profile mixed|small] [--seed S] [--offset K] [--workers N]

Writes ``ROOT/images/`` (nested folders), ``ROOT/labels.csv`` (``filename,label``) and
``ROOT/truth.json``; deterministic for a given ``n``, ``seed``, ``profile`` and ``offset`` (each image has its
own random stream; a ``.complete-…`` marker lets a rerun skip the generation). About ``n`` files:

- unique images: 40% crops of real photos from scikit-image's data (astronaut, coffee, rocket, …:
  a random crop of one photo, flipped and colour-shifted, with a patch of a second photo and a few
  marks pasted in, so no two are alike) and 60% photo-like scenes of the demo's four classes
  (landscapes, foliage, flowers, beach: ``dup_pipeline.core.demo.draw_scene``, the scenes the
  default threshold was checked against); label = source photo or scene class;
- sizes: 30% camera-size JPEGs (1280x960 to 2048x1536), 55% small JPEG photos (320x240 to
  640x480), 15% PNGs; folders ``camera/<batch>/``, ``phone/<album>/<day>/``, ``scans/<box>/``;
  ``--profile small``: no camera-size files (80% small JPEGs, 20% PNGs, all <= 640 px), for runs of 100k
  files and more (camera-size files at 100k take hours to decode and ~20 GB);
- 2% exact (byte-identical) copies and 4% near copies (resized + recompressed, brighter, 3%
  crop, or re-encoded in the other format) of unique images, in ``backup/…`` or beside their source;
- outliers: up to 12 images unlike the rest, each of a different kind (noise, rings, a text page,
  the moon, a retina, cells, …);
- bad files (0.5%, at least 4): empty, truncated JPEG, text named ``.jpg``, 4x4 PNG;
- label flips: 1% of the unique images without copies (at least 4) get another label.

``truth.json``: ``groups`` (each a source and its copies: exact and near), ``outliers``,
``bad_files`` (path → reason), ``wrong_labels`` (path → given/true), all relative to ``images/``.

``--offset K`` (with another ``--seed``) writes an addition to a folder generated with offset 0: its
images are numbered from ``K`` (``img_<K+i>``, ``broken_<K+b>``), so the two folders merge without a
name clash, and it has no outliers (the base folder has one of each kind; a second would be its copy).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from dup_pipeline.core.demo import SCENES, draw_scene

PHOTO_SEEDS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera", "clock", "grass",
               "gravel", "brick", "stereo_motorcycle")
OUTLIER_KINDS = ("noise", "rings", "checkerboard", "page", "moon", "hubble_deep_field", "retina",
                 "shepp_logan_phantom", "cell", "coins", "microaneurysms", "colorwheel")
CAMERA_SIZES = ((1280, 960), (1920, 1080), (2048, 1536))
SMALL_SIZES = ((320, 240), (480, 360), (500, 375), (640, 480))
BAD_KINDS = ("empty", "corrupt", "not_an_image", "too_small")
NEAR_KINDS = ("resized", "brighter", "cropped", "reencoded")
SCENE_CLASSES = SCENES  # the demo's photo-like scenes (its old drawings paired at 0.8: 482,554 pairs at 100k)


def _skimage(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    if isinstance(arr, tuple):  # stereo_motorcycle: (left, right, disparity)
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = (255 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-9)).astype(np.uint8)
    img = Image.fromarray(arr)
    return img.convert("RGB")


def _photo(seeds: dict[str, Image.Image], rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, str]:
    """A crop of one real photo with a patch of another and a few marks; label = the main photo."""
    name = PHOTO_SEEDS[int(rng.integers(len(PHOTO_SEEDS)))]
    src = seeds[name]
    w, h = src.size
    cw, ch = int(w * rng.uniform(0.45, 0.8)), int(h * rng.uniform(0.45, 0.8))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = src.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gains = rng.uniform(0.8, 1.2, 3)  # per channel, as a lookup table (same pixels as float math, 20x cheaper)
    img = img.point(np.clip(np.arange(256, dtype=np.float32)[None, :] * gains[:, None], 0, 255)
                    .astype(np.uint8).ravel().tolist())
    img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.8, 1.25)))
    other = seeds[PHOTO_SEEDS[int(rng.integers(len(PHOTO_SEEDS)))]]
    qw, qh = other.size[0] // 3, other.size[1] // 3
    ox, oy = int(rng.integers(0, other.size[0] - qw)), int(rng.integers(0, other.size[1] - qh))
    pw, ph = size[0] // 4, size[1] // 4
    patch = other.crop((ox, oy, ox + qw, oy + qh)).resize((pw, ph), Image.Resampling.BILINEAR)
    img.paste(patch, (int(rng.integers(0, size[0] - pw)), int(rng.integers(0, size[1] - ph))))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = int(rng.integers(0, size[0])), int(rng.integers(0, size[1])), int(rng.integers(4, size[0] // 12 + 5))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((cx - r, cy - r, cx + r, cy + r), fill=fill)
    return img, name


def _outlier(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    w, h = size
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "rings":
        return Image.fromarray((127 + 127 * np.sin(np.hypot(xx - w / 2, yy - h / 2) / 3.0)).astype(np.uint8)).convert("RGB")
    if kind == "checkerboard":
        return Image.fromarray((((xx // 24 + yy // 24) % 2) * 255).astype(np.uint8)).convert("RGB")
    return _skimage(kind).resize(size, Image.Resampling.BILINEAR)


def _encode(img: Image.Image, fmt: str, quality: int = 88, png_level: int = 6) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {"compress_level": png_level}))
    return buf.getvalue()


def _near_copy(img: Image.Image, fmt: str, kind: str) -> tuple[Image.Image, str]:
    w, h = img.size
    if kind == "resized":
        return img.resize((w * 4 // 5, h * 4 // 5), Image.Resampling.LANCZOS), "JPEG"
    if kind == "brighter":
        return ImageEnhance.Brightness(img).enhance(1.1), fmt
    if kind == "cropped":
        return img.crop((w // 32, h // 32, w - w // 32, h - h // 32)), fmt
    return img, "PNG" if fmt == "JPEG" else "JPEG"  # re-encoded in the other format


def _bad_file(kind: str, rng: np.random.Generator) -> tuple[bytes, str]:
    if kind == "empty":
        return b"", ".jpg"
    if kind == "corrupt":
        data = _encode(draw_scene(SCENES[0], rng, size=(320, 240)), "JPEG")
        return data[: len(data) // 3], ".jpg"
    if kind == "not_an_image":
        return b"this is a text file, not a picture\n" * 20, ".jpg"
    return _encode(Image.new("RGB", (4, 4), (120, 50, 50)), "PNG"), ".png"


def _folder(rng: np.random.Generator, kind: str) -> str:
    if kind == "camera":
        return f"camera/batch_{int(rng.integers(0, 8)):02d}"
    if kind == "png":
        return f"scans/box_{int(rng.integers(0, 4))}"
    return f"phone/album_{int(rng.integers(0, 6))}/day_{int(rng.integers(1, 29)):02d}"


_SEEDS: dict[str, Image.Image] = {}


def _write(images: Path, rel: str, data: bytes) -> str:
    (images / rel).parent.mkdir(parents=True, exist_ok=True)
    (images / rel).write_bytes(data)
    return rel


KIND_SHARES = {"mixed": (0.30, 0.55, 0.15), "small": (0.0, 0.80, 0.20)}  # camera, small JPEG, PNG
# Scenes are drawn on this canvas and resized; "small" draws at 1/16 of the pixels (~5x cheaper at 100k).
SCENE_CANVAS = {"mixed": (640, 480), "small": (160, 120)}
PNG_LEVEL = {"mixed": 6, "small": 1}  # zlib level of unique PNGs; level 1 encodes several times faster


def _unique(images: Path, seed: int, profile: str, i: int) -> tuple[str, str]:
    """Unique image ``i`` (its own random stream, so workers in any order give the same folder)."""
    if not _SEEDS:
        _SEEDS.update((name, _skimage(name)) for name in PHOTO_SEEDS)
    rng = np.random.default_rng([seed, i])
    kind = ("camera", "small", "png")[int(rng.choice(3, p=KIND_SHARES[profile]))]
    size = CAMERA_SIZES[i % 3] if kind == "camera" else SMALL_SIZES[i % 4]
    if rng.random() < 0.4:
        img, label = _photo(_SEEDS, rng, size)
    else:
        label = SCENE_CLASSES[i % len(SCENE_CLASSES)]
        img = draw_scene(label, rng, i, SCENE_CANVAS[profile]).resize(size, Image.Resampling.BILINEAR)
    fmt = "PNG" if kind == "png" else "JPEG"
    rel = f"{_folder(rng, kind)}/img_{i:07d}.{'png' if fmt == 'PNG' else 'jpg'}"
    return _write(images, rel, _encode(img, fmt, png_level=PNG_LEVEL[profile])), label


def _copy(images: Path, j: int, rel: str, exact: bool) -> str:
    """Copy ``j`` of ``rel``: byte-identical, or a near copy of the kind ``j`` selects."""
    where = f"backup/{Path(rel).parent}" if j % 2 else str(Path(rel).parent)
    if exact:
        return _write(images, f"{where}/{Path(rel).stem}_copy{Path(rel).suffix}", (images / rel).read_bytes())
    kind = NEAR_KINDS[j % len(NEAR_KINDS)]
    with Image.open(images / rel) as src:
        fmt = src.format
        near, near_fmt = _near_copy(src.convert("RGB"), fmt, kind)
    ext = "png" if near_fmt == "PNG" else "jpg"
    return _write(images, f"{where}/{Path(rel).stem}_{kind}.{ext}", _encode(near, near_fmt, quality=85))


def generate(root: Path, n: int, seed: int = 0, workers: int | None = None, profile: str = "mixed",
             offset: int = 0) -> dict:
    """Write the folder under ``root`` (see the module docstring) with ``workers`` processes
    (default: every core) and return the truth."""
    if profile not in KIND_SHARES:
        raise ValueError(f"profile must be one of {sorted(KIND_SHARES)}, not {profile!r}")
    marker = root / (f".complete-{n}-{seed}" + ("" if profile == "mixed" and not offset else f"-{profile}-{offset}"))
    if marker.exists():
        return json.loads((root / "truth.json").read_text())
    shutil.rmtree(root, ignore_errors=True)
    images = root / "images"
    rng = np.random.default_rng(seed)
    n_bad = max(4, n // 200)
    n_outliers = 0 if offset else min(len(OUTLIER_KINDS), max(4, n // 100))
    n_exact, n_near = max(2, n // 50), max(4, n // 25)
    n_unique = n - n_bad - n_outliers - n_exact - n_near
    truth: dict = {"n": n, "seed": seed, "profile": profile, "offset": offset, "groups": [], "outliers": [],
                   "bad_files": {}, "wrong_labels": {}}
    chunk = max(1, min(256, n_unique // (4 * (workers or os.cpu_count() or 1))))
    with ProcessPoolExecutor(workers) as pool:
        uniques = list(pool.map(_unique, repeat(images), repeat(seed), repeat(profile),
                                range(offset, offset + n_unique), chunksize=chunk))
        labels = dict(uniques)
        sources = [uniques[int(u)][0] for u in rng.choice(n_unique, size=n_exact + n_near, replace=False)]
        copies = pool.map(_copy, repeat(images), range(len(sources)), sources,
                          [j < n_exact for j in range(len(sources))], chunksize=chunk)
        for src, copy in zip(sources, copies):
            truth["groups"].append([src, copy])
            labels[copy] = labels[src]
    truth["groups"].sort()
    for k, kind in enumerate(OUTLIER_KINDS[:n_outliers]):
        rel = f"phone/album_{k % 6}/misc/odd_{kind}.png"
        truth["outliers"].append(_write(images, rel, _encode(_outlier(kind, rng, (480, 360)), "PNG")))
    for b in range(n_bad):
        kind = BAD_KINDS[b % len(BAD_KINDS)]
        data, ext = _bad_file(kind, rng)
        truth["bad_files"][_write(images, f"phone/album_{b % 6}/broken_{offset + b:05d}{ext}", data)] = kind
    in_groups = set(sources)
    candidates = [rel for rel, _ in uniques if rel not in in_groups]
    all_labels = sorted(set(labels.values()))
    for rel in rng.choice(candidates, size=max(4, n_unique // 100), replace=False).tolist():
        true = labels[rel]
        given = all_labels[(all_labels.index(true) + 1 + int(rng.integers(len(all_labels) - 1))) % len(all_labels)]
        labels[rel] = given
        truth["wrong_labels"][rel] = {"given": given, "true": true}
    lines = ["filename,label", *(f"{rel},{label}" for rel, label in sorted(labels.items()))]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "truth.json").write_text(json.dumps(truth, indent=1))
    marker.touch()
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    parser.add_argument("--profile", choices=sorted(KIND_SHARES), default="mixed",
                        help="mixed: 30%% camera-size JPEGs; small: every file <= 640 px")
    parser.add_argument("--offset", type=int, default=0, help="first image number of an addition (no outliers)")
    args = parser.parse_args()
    truth = generate(args.root, args.n, args.seed, args.workers, args.profile, args.offset)
    print(json.dumps({k: len(v) if isinstance(v, (list, dict)) else v for k, v in truth.items()}))


if __name__ == "__main__":
    main()
