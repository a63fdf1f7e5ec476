"""Galleries of an object-detection run: each box drawn on its full image (fastdup's ``draw_bbox``),
``get_bounding_box_func`` boxes and ``get_extra_col_func`` text."""

import base64
import html
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import dup_pipeline as fastdup
from dup_pipeline.core.errors import ConfigError

SIZE = (240, 160)  # thumbnails are 180 x 120: a scale of 0.75
SCALE = 0.75
BOXES = [(20, 16, 100, 80), (120, 60, 100, 88)]  # col_x, row_y, width, height
IMG = re.compile(r'<img src="data:image/jpeg;base64,([^"]+)" alt="([^"]+)"')


@pytest.fixture(scope="module")
def box_run(tmp_path_factory):
    """Four generated images (no green in them), two boxes each, run as annotations."""
    root = tmp_path_factory.mktemp("boxes")
    rng = np.random.default_rng(5)
    rows = []
    for i in range(4):
        pixels = np.empty((SIZE[1], SIZE[0], 3), np.uint8)
        pixels[..., 0] = rng.integers(60, 140, (SIZE[1], SIZE[0]))
        pixels[..., 1] = 60
        pixels[..., 2] = rng.integers(60, 140, (SIZE[1], SIZE[0]))
        path = root / "images" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows += [(str(path), *box, "thing") for box in BOXES]
    annotations = pd.DataFrame(rows, columns=["filename", "col_x", "row_y", "width", "height", "label"])
    fd = fastdup.create(work_dir=str(root / "work"), input_dir=str(root / "images"))
    assert fd.run(annotations=annotations, print_summary=False) == 0
    return fd, root


def _thumbs(page: str) -> dict[str, np.ndarray]:
    """Each tile's decoded thumbnail by its shown name."""
    return {html.unescape(name): np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")).astype(int)
            for data, name in IMG.findall(page)}


def _green(thumb: np.ndarray) -> np.ndarray:
    return (thumb[..., 1] > 170) & (thumb[..., 1] - np.maximum(thumb[..., 0], thumb[..., 2]) > 90)


def _outlined(thumb: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """Green on the four sides of ``box`` (col_x, row_y, width, height of the full image), scaled."""
    x1, y1 = round(box[0] * SCALE), round(box[1] * SCALE)
    x2, y2 = round((box[0] + box[2]) * SCALE) - 1, round((box[1] + box[3]) * SCALE) - 1
    green = _green(thumb)
    sides = [green[y1 + 4:y2 - 4, x1 + 1], green[y1 + 4:y2 - 4, x2 - 1],
             green[y1 + 1, x1 + 4:x2 - 4], green[y2 - 1, x1 + 4:x2 - 4]]
    return all(side.mean() > 0.9 for side in sides) and not green[(y1 + y2) // 2, (x1 + x2) // 2]


def test_instances_drawn_as_their_image_with_the_box(box_run):
    fd, root = box_run
    crops = pd.read_csv(root / "work" / "crops.csv")
    extra = {c: f"<b>{i}</b> & more" for i, c in enumerate(crops["crop_filename"])}
    assert fd.vis.stats_gallery(metric="blur", num_images=20, show=False, get_extra_col_func=extra) == 0
    page = (root / "work" / "galleries" / "blur.html").read_text()
    thumbs = _thumbs(page)
    assert len(thumbs) == len(crops) == 8
    for row in crops.itertuples():
        shown = [t for name, t in thumbs.items() if row.crop_filename.endswith(name)]  # the crop's name is kept
        assert len(shown) == 1 and shown[0].shape == (120, 180, 3)  # the full image, not the 100x80 crop
        assert _outlined(shown[0], (row.col_x, row.row_y, row.width, row.height))
        assert html.escape(extra[row.crop_filename], quote=False) in page
    assert "<b>0</b>" not in page


def test_bounding_box_func_and_draw_bbox_false(box_run):
    fd, root = box_run
    calls = []

    def more_boxes(filename):
        calls.append(filename)
        return [[150, 10, 230, 50]]

    fd.vis.stats_gallery(metric="blur", show=False, draw_bbox=False, get_bounding_box_func=more_boxes)
    thumbs = _thumbs((root / "work" / "galleries" / "blur.html").read_text())
    assert {t.shape for t in thumbs.values()} == {(80, 100, 3), (88, 100, 3)}  # the crops, own boxes not drawn
    assert set(calls) <= {c for c in pd.read_csv(root / "work" / "crops.csv")["crop_filename"]}

    calls.clear()
    fd.vis.stats_gallery(metric="blur", show=False, get_bounding_box_func=more_boxes)
    thumbs = _thumbs((root / "work" / "galleries" / "blur.html").read_text())
    assert set(calls) == {str(p) for p in (root / "images").iterdir()}  # called with the image drawn
    assert all(_outlined(t, (150, 10, 80, 40)) for t in thumbs.values())


def test_boxes_drawn_on_thumbnail_files_with_lazy_load(box_run, tmp_path):
    fd, root = box_run
    fd.vis.outliers_gallery(save_path=str(tmp_path), show=False, lazy_load=True)
    page = (tmp_path / "outliers.html").read_text()
    files = re.findall(r'<img src="(thumbs/[0-9a-f]+\.jpg)" alt="([^"]+)"', page)
    crops = pd.read_csv(root / "work" / "crops.csv").set_index("crop_filename")
    assert files and "data:image/jpeg" not in page
    for src, name in files:
        row = crops.loc[[c for c in crops.index if c.endswith(html.unescape(name))]].iloc[0]
        thumb = np.asarray(Image.open(tmp_path / src).convert("RGB")).astype(int)
        assert _outlined(thumb, (row.col_x, row.row_y, row.width, row.height))


def test_bad_drawing_options_are_config_errors(box_run):
    fd, _ = box_run
    with pytest.raises(ConfigError, match="get_bounding_box_func must be a callable or a dict"):
        fd.vis.outliers_gallery(show=False, get_bounding_box_func=[[0, 0, 1, 1]])
    with pytest.raises(ConfigError, match="draw_bbox must be True or False"):
        fd.vis.outliers_gallery(show=False, draw_bbox="yes")
    with pytest.raises(ConfigError, match=r"boxes of 4 numbers \[x1, y1, x2, y2\]"):
        fd.vis.stats_gallery(metric="blur", show=False, get_bounding_box_func=lambda f: [[1, 2, 3]])


def test_relative_names_given_to_the_functions(box_run, tmp_path, monkeypatch):
    """With relative paths (fastdup's ``data_dir + x``) the functions get names relative to the cwd."""
    _, root = box_run
    monkeypatch.chdir(root)
    annotations = pd.DataFrame([("images/img0.png", *BOXES[0], "thing"), ("images/img1.png", *BOXES[1], "thing")],
                               columns=["filename", "col_x", "row_y", "width", "height", "label"])
    fd = fastdup.create(work_dir=str(tmp_path / "rel"), input_dir="images/")
    assert fd.run(annotations=annotations, print_summary=False) == 0
    boxes_for, extra_for = [], []
    fd.vis.stats_gallery(metric="blur", show=False, get_bounding_box_func=lambda f: boxes_for.append(f),
                         get_extra_col_func=lambda f: extra_for.append(f) or f"extra:{f}")
    page = (tmp_path / "rel" / "galleries" / "blur.html").read_text()
    assert sorted(boxes_for) == ["images/img0.png", "images/img1.png"]
    assert sorted(extra_for) == sorted(pd.read_csv(tmp_path / "rel" / "crops.csv")["crop_filename"])
    assert all(f"extra:{name}" in page for name in extra_for)
    thumbs = _thumbs(page)
    assert len(thumbs) == 2 and all(t.shape == (120, 180, 3) for t in thumbs.values())
