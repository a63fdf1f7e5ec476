from PIL import Image, ImageFilter

from dup_pipeline.core.stats import image_stats
from dup_pipeline_tests.conftest import noise_image


def test_black_is_dark_and_white_is_bright():
    black = image_stats(Image.new("RGB", (64, 48), (0, 0, 0)))
    white = image_stats(Image.new("RGB", (64, 48), (255, 255, 255)))
    assert black["mean"] == 0 and black["max"] == 0 and black["stdv"] == 0 and black["unique"] == 1
    assert white["mean"] == 255 and white["min"] == 255


def test_known_values_of_a_two_tone_image():
    img = Image.new("L", (100, 100), 50)
    img.paste(150, (0, 0, 50, 100))
    stats = image_stats(img.convert("RGB"))
    assert abs(stats["mean"] - 100) < 1.5
    assert stats["min"] == 50 and stats["max"] == 150
    assert abs(stats["contrast"] - 0.5) < 1e-9
    assert abs(stats["stdv"] - 50) < 1.5


def test_blurred_copy_scores_lower_blur():
    sharp = noise_image(1, (300, 200))
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    assert image_stats(blurred)["blur"] < image_stats(sharp)["blur"] / 10


def test_entropy_counts_bits_of_the_grey_levels():
    flat = image_stats(Image.new("RGB", (80, 60), (90, 90, 90)))
    img = Image.new("L", (256, 256), 50)  # the statistics' own scale: no resampling
    img.paste(150, (0, 0, 128, 256))
    assert flat["entropy"] == 0.0
    assert image_stats(img.convert("RGB"))["entropy"] == 1.0  # two equally frequent levels
    assert image_stats(noise_image(3, (200, 200)))["entropy"] > 6


def test_colorfulness_is_zero_for_grey_content_and_high_for_saturated_colour():
    grey = noise_image(4, (120, 90)).convert("L").convert("RGB")
    assert image_stats(grey)["colorfulness"] == 0.0
    assert image_stats(Image.new("RGB", (50, 50), (255, 0, 0)))["colorfulness"] == 255.0
    assert image_stats(noise_image(4, (120, 90)))["colorfulness"] > 20
