"""A small deterministic demo dataset with planted problems and its ground truth.

Layout under ``root``: ``images/{train,test}/<class>/*.{jpg,png,...}``, ``images/bad/`` with
broken files, ``labels.csv`` (``filename,label,split``; a few labels are wrong on purpose) and
``ground_truth.json`` listing every planted problem by path relative to ``images/``.
"""

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from dup_pipeline.core.atomic import write_json, write_text

CLASSES = ("circles", "stripes", "waves", "triangles")
IMAGE_SIZE = (320, 240)


@dataclass(frozen=True)
class DemoDataset:
    """Where the generated demo lives."""

    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def labels(self) -> Path:
        return self.root / "labels.csv"

    @property
    def ground_truth_path(self) -> Path:
        return self.root / "ground_truth.json"

    def ground_truth(self) -> dict:
        return json.loads(self.ground_truth_path.read_text())


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A smooth random colour field: a few low-frequency waves per channel, plus sensor noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    channels = []
    for _ in range(3):
        field = np.full((h, w), float(rng.uniform(60, 200)))
        for _ in range(3):
            fx, fy, phase = rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(0, 2 * math.pi)
            field += rng.uniform(10, 40) * np.sin(2 * math.pi * (fx * xx + fy * yy) + phase)
        channels.append(field)
    arr = np.stack(channels, axis=-1) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _distractors(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int]) -> None:
    """A few small marks of random kinds, so no two images of a class look alike."""
    w, h = size
    for _ in range(int(rng.integers(2, 5))):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(6, 16))
        if rng.random() < 0.5:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=_color(rng))
        else:
            draw.line((x - 2 * r, y, x + 2 * r, y + int(rng.integers(-r, r))), fill=_color(rng), width=3)


def _color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _contrasting_pair(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A dark colour and its bright complement (never two colours of the same luminance)."""
    dark = tuple(int(v) for v in rng.integers(0, 110, 3))
    return dark, tuple(255 - v for v in dark)


def draw_class_image(label: str, rng: np.random.Generator, size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """A synthetic image whose look is decided by its class (so labels can be checked)."""
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    w, h = size
    if label == "circles":
        for _ in range(int(rng.integers(3, 8))):
            r = int(rng.integers(15, 60))
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=_color(rng), outline=(0, 0, 0), width=3)
    elif label == "stripes":
        step = int(rng.integers(12, 30))
        angle = float(rng.uniform(0, math.pi))
        colors = _contrasting_pair(rng)
        for i, off in enumerate(range(-2 * max(w, h), 2 * max(w, h), step)):
            dx, dy = math.cos(angle), math.sin(angle)
            cx, cy = w / 2 + off * -dy, h / 2 + off * dx
            draw.line(
                (cx - dx * 2 * w, cy - dy * 2 * w, cx + dx * 2 * w, cy + dy * 2 * w),
                fill=colors[i % 2], width=step // 2,
            )
    elif label == "waves":
        yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
        field = np.zeros((h, w))
        for _ in range(2):
            angle, freq = rng.uniform(0, math.pi), rng.uniform(3, 7)
            field += np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 6))
        dark, bright = (np.asarray(c, dtype=float) for c in _contrasting_pair(rng))
        t = ((field + 2) / 4)[..., None]
        waves = Image.fromarray((dark * (1 - t) + bright * t).astype(np.uint8), "RGB")
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).ellipse((w * 0.1, h * 0.05, w * 0.9, h * 0.95), fill=255)
        img.paste(waves, mask=mask)
        draw = ImageDraw.Draw(img)
    else:
        for _ in range(int(rng.integers(3, 7))):
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
            draw.polygon(pts, fill=_color(rng), outline=(255, 255, 255))
    _distractors(draw, rng, size)
    return img


def _save(img: Image.Image, path: Path, fmt: str = "JPEG", **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    path.write_bytes(buf.getvalue())


def generate_demo(root: str | Path, per_class: int = 12, seed: int = 0) -> DemoDataset:
    """Write the demo dataset under ``root`` (deterministic for a given ``per_class`` and ``seed``)."""
    demo = DemoDataset(Path(root).absolute())
    rng = np.random.default_rng(seed)
    images = demo.images
    truth: dict = {
        "classes": list(CLASSES), "exact_duplicates": [], "near_duplicates": [], "outliers": [],
        "bad_files": {}, "dark": [], "bright": [], "blurred": [], "wrong_labels": {}, "leakage": [],
    }
    labels: list[tuple[str, str, str]] = []
    originals: dict[str, list[tuple[str, Image.Image]]] = {c: [] for c in CLASSES}
    formats = [("jpg", "JPEG", {"quality": 92}), ("png", "PNG", {})]
    for label in CLASSES:
        for i in range(per_class):
            split = "test" if i % 4 == 3 else "train"
            ext, fmt, kw = formats[i % 2]
            rel = f"{split}/{label}/{label}_{i:03d}.{ext}"
            img = draw_class_image(label, rng)
            _save(img, images / rel, fmt, **kw)
            labels.append((rel, label, split))
            originals[label].append((rel, img))

    def add(rel: str, img: Image.Image, label: str, split: str, fmt: str = "JPEG", **kw) -> str:
        _save(img, images / rel, fmt, **kw)
        labels.append((rel, label, split))
        return rel

    for label in CLASSES:
        src_rel, src = originals[label][0]
        # exact (byte-identical) copy in the same split
        copy_rel = f"train/{label}/{label}_copy_of_000{Path(src_rel).suffix}"
        (images / copy_rel).write_bytes((images / src_rel).read_bytes())
        labels.append((copy_rel, label, "train"))
        truth["exact_duplicates"].append([src_rel, copy_rel])
        # near duplicates: resized + recompressed, brightness change, small crop
        base_rel, base = originals[label][1]
        w, h = base.size
        variants = {
            "resized_jpeg": base.resize((w * 4 // 5, h * 4 // 5), Image.Resampling.LANCZOS),
            "brighter": ImageEnhance.Brightness(base).enhance(1.1),
            "cropped": base.crop((w // 32, h // 32, w - w // 32, h - h // 32)),
        }
        for kind, img in variants.items():
            rel = add(f"train/{label}/{label}_001_{kind}.jpg", img, label, "train", quality=85)
            truth["near_duplicates"].append([base_rel, rel, kind])
        # leakage: a test image that is a re-encoded copy of a training image
        leak_rel, leak = originals[label][2]
        rel = add(f"test/{label}/{label}_leak_of_002.jpg", leak, label, "test", quality=85)
        truth["leakage"].append([leak_rel, rel])
        # blurred copy
        blur_rel, blur_src = originals[label][4]
        rel = add(f"train/{label}/{label}_004_blurred.jpg", blur_src.filter(ImageFilter.GaussianBlur(6)), label, "train")
        truth["blurred"].append([blur_rel, rel])
    dark_src = originals["circles"][5][1]
    truth["dark"].append(add("train/circles/circles_dark.jpg", ImageEnhance.Brightness(dark_src).enhance(0.06), "circles", "train"))
    bright_src = originals["stripes"][5][1]
    bright = Image.eval(bright_src, lambda v: 235 + v * 20 // 255)
    truth["bright"].append(add("train/stripes/stripes_bright.png", bright, "stripes", "train", "PNG"))
    # outliers: unlike every class
    noise = Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8), "RGB")
    truth["outliers"].append(add("train/misc/noise.png", noise, "circles", "train", "PNG"))
    yy, xx = np.mgrid[0 : IMAGE_SIZE[1], 0 : IMAGE_SIZE[0]]
    rings = (127 + 127 * np.sin(np.hypot(xx - 160, yy - 120) / 3.0)).astype(np.uint8)
    truth["outliers"].append(add("train/misc/rings.png", Image.fromarray(rings, "L"), "stripes", "train", "PNG"))
    # other formats the scanner must read
    for ext, fmt in (("bmp", "BMP"), ("gif", "GIF"), ("webp", "WEBP"), ("tiff", "TIFF")):
        img = draw_class_image("triangles", rng)
        add(f"train/triangles/triangles_format.{ext}", img, "triangles", "train", fmt)
    # wrong labels: images of one class labeled as another
    for k, label in enumerate(CLASSES):
        wrong = CLASSES[(k + 1) % len(CLASSES)]
        rel = originals[label][6][0]
        truth["wrong_labels"][rel] = {"given": wrong, "true": label}
    labels = [(rel, truth["wrong_labels"].get(rel, {}).get("given", lab), split) for rel, lab, split in labels]
    _write_bad_files(images / "bad", truth["bad_files"])
    lines = ["filename,label,split", *(f"{rel},{label},{split}" for rel, label, split in sorted(labels))]
    write_text("\n".join(lines) + "\n", demo.labels)
    write_json(truth, demo.ground_truth_path)
    return demo


def _write_bad_files(folder: Path, truth: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    draw_class_image("circles", np.random.default_rng(99)).save(good, "JPEG", quality=90)
    data = good.getvalue()
    files = {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (data[: len(data) // 3], "corrupt"),
        "not_an_image.jpg": (b"this is a text file, not a picture\n" * 20, "not_an_image"),
    }
    tiny = io.BytesIO()
    Image.new("RGB", (4, 4), (120, 50, 50)).save(tiny, "PNG")
    files["tiny.png"] = (tiny.getvalue(), "too_small")
    for name, (payload, reason) in files.items():
        (folder / name).write_bytes(payload)
        truth[f"bad/{name}"] = reason
