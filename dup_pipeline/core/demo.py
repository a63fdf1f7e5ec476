"""A small deterministic demo dataset with planted problems and its ground truth.

Layout under ``root``: ``images/{train,test}/<class>/*.{jpg,png,...}``, ``images/bad/`` with
broken files, ``labels.csv`` (``filename,label,split``; a few labels are wrong on purpose) and
``ground_truth.json`` listing every planted problem by path relative to ``images/``.

The demo's images are photo-like generated scenes (:data:`SCENES`, :func:`draw_scene`): distinct
ones score below the calibrated duplicate threshold, as distinct photographs do. The synthetic
drawings (:data:`CLASSES`, :func:`draw_class_image`) stay for what was built on them: the int8
model's calibration images and the ``auto`` model probe (changing them changes those) and tests.
"""

import colorsys
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from dup_pipeline.core.atomic import write_json, write_text

CLASSES = ("circles", "stripes", "waves", "triangles")  # the drawings' classes (not the demo's)
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


# -- photo-like scenes (the demo's classes) ----------------------------------------------------------
#
# Procedural "photographs": 1/f (fractal) noise for terrain, clouds, water and foliage, a lit sky,
# depth haze, and objects. Discrete choices (sky, foreground, composition) are spread over the images
# of a class by their index, so no two of a class share every choice: distinct scenes stay below the
# calibrated duplicate threshold (docs/calibration.md; measured max in the README's demo section),
# while a class stays closer to itself than to the others (label checks need that).

SCENES = ("landscapes", "foliage", "flowers", "beach")


def _fractal(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with a 1/f^(beta/2) amplitude spectrum (larger beta: smoother)."""
    h, w = shape
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]).astype(np.float32)
    f[0, 0] = np.inf
    real, imag = rng.normal(size=f.shape).astype(np.float32), rng.normal(size=f.shape).astype(np.float32)
    field = np.fft.irfft2((real + 1j * imag) / f ** np.float32(beta / 2), s=(h, w))
    return (field - field.mean()) / (field.std() + 1e-9)


def _ridge(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """A 1-D fractal profile of length ``n`` (mountain ridges, shore lines)."""
    f = np.fft.rfftfreq(2 * n)
    f[0] = np.inf
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    line = np.fft.irfft(spectrum, n=2 * n)[:n]
    return (line - line.mean()) / (line.std() + 1e-9)


def _mix(a: object, b: object, t: object) -> np.ndarray:
    a, b, t = (np.asarray(v, np.float32) for v in (a, b, t))
    return a + (b - a) * t


def _rgb(rng: np.random.Generator, low: list[float], high: list[float]) -> np.ndarray:
    return rng.uniform(low, high)


STEPS = (0.6180339887, 0.4142135624, 0.7320508076)  # fractional parts of the golden ratio, sqrt 2, sqrt 3


def _spread(index: int, offset: float = 0.0, axis: int = 0) -> float:
    """A number in [0, 1) far from those of the neighbouring indexes (a low-discrepancy sequence);
    each ``axis`` steps by another irrational, so two properties of one image do not move together."""
    return (offset + index * STEPS[axis]) % 1.0


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    """An RGB colour (0..255 floats) from hue, saturation and value in [0, 1]."""
    return np.asarray(colorsys.hsv_to_rgb(hue % 1.0, saturation, value)) * 255.0


def _sky(rng: np.random.Generator, kind: int, size: tuple[int, int]) -> np.ndarray:
    """A sky of ``kind`` 0 day, 1 sunset, 2 overcast: a vertical gradient with fractal clouds."""
    w, h = size
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    if kind == 0:
        top, horizon = _rgb(rng, [20, 60, 140], [110, 150, 250]), _rgb(rng, [160, 180, 200], [240, 240, 255])
    elif kind == 1:
        top, horizon = _rgb(rng, [40, 20, 60], [120, 80, 160]), _rgb(rng, [220, 100, 30], [255, 200, 120])
    else:
        grey = rng.uniform(110, 210)
        top, horizon = np.full(3, grey - 25) + rng.uniform(-8, 8, 3), np.full(3, grey + 20)
    sky = np.broadcast_to(_mix(top, horizon, yy ** np.float32(rng.uniform(0.4, 2.0))), (h, w, 3))
    clouds = _fractal(rng, (h, w), rng.uniform(2.0, 3.2))
    cover = np.clip((clouds - rng.uniform(0.0, 2.0)) * rng.uniform(0.3, 1.0), 0, 1)[..., None]
    return _mix(sky, np.full(3, rng.uniform(200, 255)), cover)


def _photo(arr: np.ndarray, rng: np.random.Generator, noise: float = 3.0) -> Image.Image:
    """Float pixels to an 8-bit image with ``noise`` (standard deviation) of sensor noise (drawn even
    when 0, which keeps the random stream, hence the images of a seed, as they were)."""
    jitter = rng.normal(0, noise, arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr + jitter, 0, 255).astype(np.uint8), "RGB")


def _landscape(rng: np.random.Generator, index: int, size: tuple[int, int]) -> Image.Image:
    """Mountain ridges fading into the haze, under a sky, above a lake, a meadow or nothing."""
    w, h = size
    img = _sky(rng, index % 3, size)
    layers, base = int(rng.integers(1, 5)), rng.uniform(0.2, 0.65)
    hue = _hsv(_spread(index) + rng.uniform(-0.05, 0.05), rng.uniform(0.25, 0.7), rng.uniform(0.35, 0.6))
    haze = img[int(base * h)].mean(axis=0)
    rows = np.arange(h)[:, None]
    for k in range(layers):
        line = (base + 0.08 * k + rng.uniform(0.03, 0.25) * _ridge(rng, w, rng.uniform(1.5, 3.0))) * h
        colour = _mix(hue * rng.uniform(0.4, 1.2), haze, 0.7 * (layers - 1 - k) / layers)
        rock = colour + _fractal(rng, (h, w), rng.uniform(1.2, 2.4))[..., None] * rng.uniform(5, 25)
        img = np.where((rows > line[None, :])[..., None], rock, img)
    foreground = (index // 3) % 3
    if foreground == 0:  # a lake mirroring the scene
        shore = int(rng.uniform(0.6, 0.9) * h)
        mirrored = img[np.clip(2 * shore - np.arange(h), 0, h - 1)]
        img = np.where((rows > shore)[..., None], _mix(mirrored, [30, 50, 80], rng.uniform(0.2, 0.6)), img)
    elif foreground == 1:  # a meadow or sand
        edge = int(rng.uniform(0.7, 0.92) * h)
        ground = _rgb(rng, [60, 90, 20], [200, 190, 120]) + _fractal(rng, (h, w), 1.0)[..., None] * 25
        img = np.where((rows > edge)[..., None], ground, img)
    return _photo(img, rng)


def _leaf(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, length: float,
          colour: np.ndarray, angle: float | None = None) -> None:
    """A pointed leaf with its midrib, from ``(x, y)`` along ``angle`` (random when None)."""
    angle = rng.uniform(0, 2 * math.pi) if angle is None else angle
    half, dx, dy = length * rng.uniform(0.2, 0.5), math.cos(angle), math.sin(angle)
    mx, my = x + dx * length / 2, y + dy * length / 2
    outline = [(x, y), (mx - dy * half, my + dx * half), (x + dx * length, y + dy * length),
               (mx + dy * half, my - dx * half)]
    colour = np.clip(colour, 0, 255)
    draw.polygon(outline, fill=tuple(int(v) for v in colour))
    draw.line([(x, y), (x + dx * length, y + dy * length)], fill=tuple(int(v * 0.6) for v in colour))


def _foliage(rng: np.random.Generator, index: int, size: tuple[int, int]) -> Image.Image:
    """Leaves: a dense canopy, leafy branches in front of a blurred canopy, or fallen leaves."""
    w, h = size
    hue = 0.02 + 0.4 * _spread(index)  # red and orange (autumn) to yellow-green and green
    dark = _hsv(hue + rng.uniform(-0.03, 0.03), rng.uniform(0.6, 0.9), rng.uniform(0.2, 0.4))
    light = _hsv(hue + rng.uniform(-0.05, 0.05), rng.uniform(0.4, 0.8), rng.uniform(0.6, 0.9))
    scale = math.exp(math.log(0.5) + _spread(index, 0.3, axis=1) * math.log(6.0))  # leaf size 0.5x .. 3x
    mode = index % 3
    if mode == 0:  # canopy: leaves over mottled leaves
        canopy = np.clip(_fractal(rng, (h, w), rng.uniform(1.0, 2.6)) * rng.uniform(0.15, 0.45) + 0.5, 0, 1)
        img = _photo(_mix(dark, light, canopy[..., None]), rng, 0)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(40, 200) / scale**1.5) + 5):
            _leaf(draw, rng, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 30) * scale,
                  _mix(dark, light, rng.uniform(0, 1.3)))
    elif mode == 1:  # leafy branches in front of a blurred canopy
        canopy = np.clip(_fractal(rng, (h, w), rng.uniform(2.6, 3.4)) * 0.3 + 0.5, 0, 1)[..., None]
        img = _photo(_mix(dark * 0.6, light * 0.8, canopy), rng, 0)
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(3, 8)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x, y = (0.0, rng.uniform(0, h)) if rng.random() < 0.5 else (rng.uniform(0, w), 0.0)
            angle = rng.uniform(-0.6, 0.6) + (0 if x == 0 else math.pi / 2)
            for _ in range(int(rng.integers(6, 14))):
                step = rng.uniform(15, 35)
                nx, ny = x + math.cos(angle) * step, y + math.sin(angle) * step
                draw.line((x, y, nx, ny), fill=(70, 50, 35), width=int(rng.integers(2, 6)))
                for side in (-1, 1):
                    length = rng.uniform(10, 28) * min(scale, 1.5)
                    _leaf(draw, rng, nx, ny, length, _mix(dark, light, rng.uniform(0, 1.2)),
                          angle + side * rng.uniform(0.5, 1.3))
                x, y, angle = nx, ny, angle + rng.uniform(-0.35, 0.35)
    else:  # fallen leaves on the soil
        soil = _hsv(0.04 + 0.1 * _spread(index, 0.3, axis=2), rng.uniform(0.05, 0.5), rng.uniform(0.2, 0.6))
        soil = soil + _fractal(rng, (h, w), rng.uniform(0.8, 1.8))[..., None] * rng.uniform(10, 30)
        img = _photo(soil, rng, 0)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(20, 90) / scale) + 5):
            tone = _hsv(_spread(index, 0.9, axis=1) * 0.4 + rng.uniform(-0.05, 0.05), rng.uniform(0.5, 0.9),
                        rng.uniform(0.4, 0.9))
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            _leaf(draw, rng, x, y, rng.uniform(10, 35) * min(scale, 1.5), tone)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))


def _blossom(draw: ImageDraw.ImageDraw, rng: np.random.Generator, cx: float, cy: float, radius: float,
             colour: np.ndarray) -> None:
    petals, turn, stretch = int(rng.integers(4, 14)), rng.uniform(0, math.pi), rng.uniform(0.6, 1.4)
    for p in range(petals):
        angle = turn + 2 * math.pi * p / petals
        r = radius * rng.uniform(0.3, 0.5)
        px, py = cx + math.cos(angle) * radius * 0.55, cy + math.sin(angle) * radius * 0.55
        shade = np.clip(colour * rng.uniform(0.75, 1.1), 0, 255)
        draw.ellipse((px - r * stretch, py - r * 0.7, px + r * stretch, py + r * 0.7),
                     fill=tuple(int(v) for v in shade), outline=tuple(int(v * 0.6) for v in shade))
    r = radius * rng.uniform(0.12, 0.3)
    heart = rng.uniform([120, 60, 0], [255, 220, 80])
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in heart))


def _flowers(rng: np.random.Generator, index: int, size: tuple[int, int]) -> Image.Image:
    """Blossoms: one in close-up against a blurred garden, a few against the sky, or a meadow."""
    w, h = size
    mode = index % 3
    petal = _spread(index, 0.5)
    if mode == 0:
        back = _spread(index, 0.2, axis=1)
        dark = _hsv(back, rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.4))
        light = _hsv(back + rng.uniform(-0.1, 0.1), rng.uniform(0.2, 0.7), rng.uniform(0.5, 0.9))
        bokeh = np.clip(_fractal(rng, (h, w), rng.uniform(2.5, 3.5)) * 0.3 + 0.5, 0, 1)[..., None]
        picture = _photo(_mix(dark, light, bokeh), rng, 0).filter(ImageFilter.GaussianBlur(rng.uniform(1, 6)))
        blossoms = [(rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(70, 150))]
    elif mode == 1:
        picture = _photo(_sky(rng, (index // 3) % 3, size), rng, 0)
        blossoms = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(25, 60))
                    for _ in range(int(rng.integers(2, 6)))]
    else:
        sky = _sky(rng, (index // 3) % 3, size)
        horizon = int(rng.uniform(0.15, 0.6) * h)
        tilt = (_spread(index, 0.15, axis=2) - 0.5) * 0.4 * (np.arange(w) - w / 2)
        grass = _hsv(0.16 + 0.12 * _spread(index, 0.1, axis=2), rng.uniform(0.4, 0.8), rng.uniform(0.35, 0.7))
        grass = grass + _fractal(rng, (h, w), rng.uniform(1.0, 2.0))[..., None] * 20
        below = np.arange(h)[:, None] > horizon + tilt[None, :]
        picture = _photo(np.where(below[..., None], grass, sky), rng, 0)
        near = rng.uniform(8, 30)
        blossoms = [(rng.uniform(0, w), y, 1 + near * (y - horizon) / (h - horizon))
                    for y in rng.uniform(horizon + 2, h, int(rng.integers(10, 50)))]
    draw = ImageDraw.Draw(picture)
    for cx, cy, radius in blossoms:
        if mode < 2 and rng.random() < 0.6:
            stem = (cx, cy, cx + rng.uniform(-40, 40), h)
            draw.line(stem, fill=(40, 90, 30), width=max(2, int(radius / 12)))
        tone = _hsv(petal + rng.uniform(-0.1, 0.1), rng.uniform(0.4, 0.9), rng.uniform(0.6, 1.0))
        _blossom(draw, rng, cx, cy, radius, tone)
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return _photo(np.asarray(picture, float), rng)


def _beach(rng: np.random.Generator, index: int, size: tuple[int, int]) -> Image.Image:
    """Sky, sea and a shore of sand (umbrellas, people), rocks, or a far coast seen from the water;
    sometimes a boat, a palm or a cliff."""
    w, h = size
    mode = index % 3
    img = _sky(rng, (index // 3) % 3, size)
    horizon = int((0.2 + 0.35 * _spread(index, 0.7, axis=1)) * h)
    shore = int(rng.uniform(horizon + 15, 0.85 * h) if mode < 2 else rng.uniform(horizon + 3, horizon + 15))
    rows = np.arange(h)[:, None]
    sea = _hsv(0.42 + 0.2 * _spread(index), rng.uniform(0.4, 0.85), rng.uniform(0.4, 0.8))
    water = sea + _fractal(rng, (h, w), 2.4)[..., None] * rng.uniform(6, 20)
    img = np.where((rows > horizon)[..., None], water, img)
    # the shore runs level or diagonally away from the camera
    slope = (_spread(index, 0.15, axis=2) - 0.5) * 1.2 * (h - horizon) / w
    line = np.clip(shore + slope * (np.arange(w) - w / 2), horizon + 4, h)
    line = line + _ridge(rng, w, 2.0) * rng.uniform(2, 10)
    if mode == 0:  # sand
        hue = 0.06 + 0.08 * _spread(index, 0.4, axis=2)
        ground = _hsv(hue, rng.uniform(0.15, 0.5), rng.uniform(0.6, 0.95))
        ground = ground + _fractal(rng, (h, w), 1.2)[..., None] * rng.uniform(5, 20)
    elif mode == 1:  # rocks: boulders from thresholded fractal noise, lit from above
        relief = _fractal(rng, (h, w), rng.uniform(2.0, 2.8))
        lit = np.clip(0.7 + 2.5 * np.gradient(relief, axis=0), 0.3, 1.3)
        stone = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.05, 0.35), rng.uniform(0.3, 0.6))
        ground = stone * lit[..., None]
        ground = np.where((relief > rng.uniform(-0.3, 0.4))[..., None], ground, water)
    else:  # a far coast seen from the water: wooded hills on the horizon, swell in front
        line = np.full(w, float(h))
        hills = horizon - np.abs(_ridge(rng, w, rng.uniform(1.8, 2.6))) * rng.uniform(3, 0.15 * horizon)
        land = _hsv(rng.uniform(0.2, 0.35), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.45))
        land = land + _fractal(rng, (h, w), 1.5)[..., None] * 20
        img = np.where(((rows > hills[None, :]) & (rows <= shore))[..., None], land, img)
        swell = np.sin(rows * rng.uniform(0.3, 1.2) + 3 * _fractal(rng, (h, w), 2.6)) * (rows - horizon) / h
        img = np.where((rows > shore)[..., None], img + swell[..., None] * rng.uniform(20, 50), img)
        ground = img
    img = np.where((rows > line[None, :])[..., None], ground, img)
    if mode == 0:
        img = np.where((np.abs(rows - line[None, :]) < rng.uniform(1.5, 5))[..., None], 245.0, img)  # surf
    picture = _photo(img, rng, 0)
    draw = ImageDraw.Draw(picture)
    for _ in range(int(12 * _spread(index, 0.6, axis=1) ** 2) if mode == 0 else 0):  # empty to busy beach
        x = rng.uniform(0, w)
        y = rng.uniform(min(line[int(x) % w] + 5, h - 1), h)
        s = rng.uniform(4, 14) * (0.5 + (y - horizon) / h)
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:  # an umbrella
            draw.pieslice((x - s * 2, y - s * 2, x + s * 2, y + s), 180, 360, fill=colour)
            draw.line((x, y - s * 0.5, x, y + s * 1.5), fill=(80, 70, 60), width=2)
        else:  # a person
            draw.ellipse((x - s * 0.3, y - s * 1.6, x + s * 0.3, y - s), fill=(120, 80, 60))
            draw.rectangle((x - s * 0.35, y - s, x + s * 0.35, y), fill=colour)
    if mode == 2 or rng.random() < 0.3:  # a sailing boat
        x, y = rng.uniform(20, w - 20), rng.uniform(horizon + 3, max(shore, h * 0.8) if mode == 2 else shore)
        s = rng.uniform(4, 12) * (1 + 2 * (mode == 2))
        draw.polygon([(x - s * 2, y), (x + s * 2, y), (x + s * 1.4, y + s * 0.6), (x - s * 1.4, y + s * 0.6)],
                     fill=(240, 240, 240))
        draw.polygon([(x, y - s * 2.5), (x, y), (x + s * 1.5, y)], fill=(250, 250, 245))
    if index % 2:  # a palm
        x, top, lean = rng.uniform(0, w), rng.uniform(0.05, 0.4) * h, rng.uniform(-60, 60)
        draw.line((x, h, x + lean, top), fill=(90, 70, 40), width=int(rng.integers(4, 10)))
        for _ in range(int(rng.integers(5, 9))):
            angle, length = rng.uniform(0, 2 * math.pi), rng.uniform(30, 70)
            tip = (x + lean + math.cos(angle) * length, top + abs(math.sin(angle)) * length * 0.6 - 10)
            draw.line((x + lean, top, *tip), fill=(30, 90, 30), width=int(rng.integers(3, 7)))
    if (index // 2) % 2:  # a cliff on one side
        left, reach = rng.random() < 0.5, rng.uniform(0.15, 0.4) * w
        profile = np.clip(0.5 + 0.25 * _ridge(rng, h, 2.0), 0.05, 1) * reach
        edge = [((p if left else w - p), y) for y, p in zip(range(0, h, 8), profile[::8])]
        draw.polygon([(0 if left else w, 0), *edge, (0 if left else w, h)],
                     fill=tuple(int(v) for v in rng.uniform([70, 60, 50], [150, 130, 110])))
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))
    return _photo(np.asarray(picture, float), rng)


ZOOMS = (1.0, 0.8, 0.6)  # a scene is drawn 1/zoom times larger and cropped back: how close the camera is
_SCENE_DRAWERS = {"landscapes": _landscape, "foliage": _foliage, "flowers": _flowers, "beach": _beach}


def draw_scene(label: str, rng: np.random.Generator, index: int = 0,
               size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """A photo-like image of class ``label`` (one of :data:`SCENES`); ``index`` spreads the discrete
    choices (sky, foreground, composition, zoom) over the images of a class."""
    zoom = ZOOMS[int(_spread(index, 0.25, axis=2) * len(ZOOMS))]
    full = (round(size[0] / zoom), round(size[1] / zoom))
    scene = _SCENE_DRAWERS[label](rng, index, full)
    if zoom == 1.0:
        return scene
    x, y = rng.uniform(0, full[0] - size[0]), rng.uniform(0, full[1] - size[1])
    return scene.crop((int(x), int(y), int(x) + size[0], int(y) + size[1]))


def _save(img: Image.Image, path: Path, fmt: str = "JPEG", **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    if fmt == "PNG":
        kwargs.setdefault("compress_level", 1)  # fast; the pixels are the same
    img.save(buf, fmt, **kwargs)
    path.write_bytes(buf.getvalue())


# Scenes of one class are look-alikes, as photographs of one subject are: with most seeds (16 of
# 0..24, 12 per class) two distinct scenes score 0.8 or more. Seed 6 was picked as the one whose
# distinct scenes lie furthest apart while each planted wrong label's image has mostly its own class
# among its neighbours; tests check both at the default threshold. Measured with the fp32 model
# (the int8 models move scores by a few hundredths): planted copies score 0.862 or more, distinct
# scenes 0.754 at most, a blurred copy 0.777 at most against another scene; the two planted outliers
# lie furthest from everything (the overexposed copy keeps some contrast so that it does not).
DEFAULT_SEED = 6
BLUR_RADIUS = 4  # at 3, fp32 scored a blurred foliage copy 0.80 against a distinct foliage scene


def generate_demo(root: str | Path, per_class: int = 12, seed: int = DEFAULT_SEED) -> DemoDataset:
    """Write the demo dataset under ``root`` (deterministic for a given ``per_class`` and ``seed``)."""
    demo = DemoDataset(Path(root).absolute())
    rng = np.random.default_rng(seed)
    images = demo.images
    truth: dict = {
        "classes": list(SCENES), "exact_duplicates": [], "near_duplicates": [], "outliers": [],
        "bad_files": {}, "dark": [], "bright": [], "blurred": [], "wrong_labels": {}, "leakage": [],
    }
    labels: list[tuple[str, str, str]] = []
    originals: dict[str, list[tuple[str, Image.Image]]] = {c: [] for c in SCENES}
    formats = [("jpg", "JPEG", {"quality": 92}), ("png", "PNG", {})]
    for label in SCENES:
        for i in range(per_class):
            split = "test" if i % 4 == 3 else "train"
            ext, fmt, kw = formats[i % 2]
            rel = f"{split}/{label}/{label}_{i:03d}.{ext}"
            img = draw_scene(label, rng, i)
            _save(img, images / rel, fmt, **kw)
            labels.append((rel, label, split))
            originals[label].append((rel, img))

    def add(rel: str, img: Image.Image, label: str, split: str, fmt: str = "JPEG", **kw) -> str:
        _save(img, images / rel, fmt, **kw)
        labels.append((rel, label, split))
        return rel

    for label in SCENES:
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
        blurred = blur_src.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        rel = add(f"train/{label}/{label}_004_blurred.jpg", blurred, label, "train")
        truth["blurred"].append([blur_rel, rel])
    dark_src = originals["landscapes"][5][1]
    dark = ImageEnhance.Brightness(dark_src).enhance(0.1)
    truth["dark"].append(add("train/landscapes/landscapes_dark.jpg", dark, "landscapes", "train"))
    bright_src = originals["foliage"][5][1]
    bright = Image.eval(bright_src, lambda v: 215 + v * 40 // 255)
    truth["bright"].append(add("train/foliage/foliage_bright.png", bright, "foliage", "train", "PNG"))
    # outliers: unlike every class
    noise = Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8), "RGB")
    truth["outliers"].append(add("train/misc/noise.png", noise, "landscapes", "train", "PNG"))
    yy, xx = np.mgrid[0 : IMAGE_SIZE[1], 0 : IMAGE_SIZE[0]]
    rings = (127 + 127 * np.sin(np.hypot(xx - 160, yy - 120) / 3.0)).astype(np.uint8)
    rings_img = Image.fromarray(rings, "L")
    truth["outliers"].append(add("train/misc/rings.png", rings_img, "foliage", "train", "PNG"))
    # other formats the scanner must read
    other_formats = (("bmp", "BMP"), ("gif", "GIF"), ("webp", "WEBP"), ("tiff", "TIFF"))
    for label, (ext, fmt) in zip(SCENES, other_formats):
        img = draw_scene(label, rng, per_class)
        add(f"train/{label}/{label}_format.{ext}", img, label, "train", fmt)
    # wrong labels: images of one class labeled as another
    for k, label in enumerate(SCENES):
        wrong = SCENES[(k + 1) % len(SCENES)]
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
    draw_scene("landscapes", np.random.default_rng(99)).save(good, "JPEG", quality=90)
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
