import numpy as np
import pytest
from PIL import Image

from dup_pipeline.core.decode import BadFile, decode_image
from dup_pipeline_tests.conftest import jpeg_bytes, noise_image, save_image


def reason(path) -> str:
    with pytest.raises(BadFile) as info:
        decode_image(str(path))
    return info.value.reason


def test_every_bad_reason(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert reason(tmp_path / "empty.jpg") == "empty"
    (tmp_path / "text.jpg").write_bytes(b"hello world\n" * 50)
    assert reason(tmp_path / "text.jpg") == "not_an_image"
    data = jpeg_bytes(noise_image(3, (400, 300)))
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    assert reason(tmp_path / "trunc.jpg") == "corrupt"
    save_image(tmp_path / "tiny.png", noise_image(1, (5, 40)))
    assert reason(tmp_path / "tiny.png") == "too_small"
    save_image(tmp_path / "icon.ico", noise_image(1, (32, 32)), "ICO")
    assert reason(tmp_path / "icon.ico") == "unsupported_format"
    assert reason(tmp_path / "gone.png") == "not_found"  # "missing" is for a manifest row that vanished
    save_image(tmp_path / "big.png", Image.new("1", (12000, 12000)))
    with pytest.raises(BadFile) as info:
        decode_image(str(tmp_path / "big.png"), max_pixels=100_000_000)
    assert info.value.reason == "too_large"


def test_bad_png_crc_is_corrupt(tmp_path):
    path = save_image(tmp_path / "crc.png", noise_image(4))
    raw = bytearray(path.read_bytes())
    idat = raw.index(b"IDAT")
    raw[idat + 10] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert reason(path) == "corrupt"


def test_folder_is_not_a_regular_file(tmp_path):
    (tmp_path / "folder.jpg").mkdir()  # listed by a list file, but cannot be read as a file
    assert reason(tmp_path / "folder.jpg") == "not_a_regular_file"


def test_modes_are_normalized_to_rgb(tmp_path):
    gray16 = Image.fromarray((np.ones((40, 50)) * 65535 // 2).astype(np.uint16))
    save_image(tmp_path / "g16.png", gray16)
    out = decode_image(str(tmp_path / "g16.png"))
    assert out.image.mode == "RGB" and abs(np.asarray(out.image).mean() - 127.5) < 1.5
    rgba = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    save_image(tmp_path / "clear.png", rgba)
    assert np.asarray(decode_image(str(tmp_path / "clear.png")).image).min() == 255  # shown on white
    cmyk = Image.new("CMYK", (40, 30), (0, 0, 0, 0))
    save_image(tmp_path / "cmyk.jpg", cmyk, "JPEG")
    out = decode_image(str(tmp_path / "cmyk.jpg"))
    assert out.mode == "CMYK" and out.channels == 4 and np.asarray(out.image).mean() > 240
    pal = noise_image(5, (40, 30)).convert("P")
    save_image(tmp_path / "pal.gif", pal)
    out = decode_image(str(tmp_path / "pal.gif"))
    assert out.image.mode == "RGB" and out.format == "GIF"
    gray = noise_image(6, (40, 30)).convert("L")
    save_image(tmp_path / "gray.jpg", gray, "JPEG")
    out = decode_image(str(tmp_path / "gray.jpg"))
    assert out.image.mode == "RGB" and out.channels == 1


def test_exif_orientation_swaps_size(tmp_path):
    img = noise_image(7, (200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    save_image(tmp_path / "rot.jpg", img, "JPEG", exif=exif)
    out = decode_image(str(tmp_path / "rot.jpg"))
    assert (out.width, out.height) == (100, 200)
    assert out.image.size == (100, 200)


def test_large_jpeg_is_decoded_reduced(tmp_path):
    save_image(tmp_path / "large.jpg", noise_image(8, (2400, 1600)), "JPEG")
    out = decode_image(str(tmp_path / "large.jpg"), work_side=512)
    assert (out.width, out.height) == (2400, 1600)
    assert 512 <= max(out.image.size) <= 1200
