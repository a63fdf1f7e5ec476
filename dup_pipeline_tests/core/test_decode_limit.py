"""Our pixel limit stays local to our decoding: Pillow's process-wide guard is left as the user set it."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from dup_pipeline.core.decode import BadFile, decode_image
from dup_pipeline_tests.conftest import noise_image, save_image


def test_importing_the_decoder_keeps_pillows_guard():
    code = ("import warnings; from PIL import Image; default = Image.MAX_IMAGE_PIXELS; "
            "import dup_pipeline.core.decode, dup_pipeline.core.pipeline; "
            "assert Image.MAX_IMAGE_PIXELS == default, Image.MAX_IMAGE_PIXELS; "
            "assert not [f for f in warnings.filters if f[2] is Image.DecompressionBombWarning], warnings.filters")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("TIFF", "tif")])
def test_images_between_pillows_limit_and_max_pixels_decode(tmp_path, monkeypatch, fmt, suffix):
    path = str(save_image(tmp_path / f"a.{suffix}", noise_image(0, (120, 100)), fmt))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000)  # 12,000 pixels: Pillow refuses (> 2x its limit)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    with ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(lambda _: decode_image(path, max_pixels=1_000_000), range(16)))
    assert {(d.width, d.height, d.format) for d in decoded} == {(120, 100, fmt)}
    assert Image.MAX_IMAGE_PIXELS == 2_000  # restored for the user's own code
    with pytest.raises(BadFile, match="exceeds max_pixels=5000") as info:
        decode_image(path, max_pixels=5_000)
    assert info.value.reason == "too_large"
    assert Image.MAX_IMAGE_PIXELS == 2_000
