from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from dup_pipeline.cli import main
from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.image_issues import (
    IMAGE_ISSUES_FILE,
    ISSUES,
    image_issues,
    issue_counts,
    issue_thresholds,
)
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.stats import image_stats
from dup_pipeline_tests.conftest import noise_image, save_image


def _stats_table(images: dict[str, Image.Image]) -> pl.DataFrame:
    rows = [{"index": i, "filename": name, "width": img.width, "height": img.height, "mode": img.mode,
             **image_stats(img.convert("RGB"))} for i, (name, img) in enumerate(images.items())]
    return pl.DataFrame(rows)


def _two_tone(size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, (20, 40, 200))
    ImageDraw.Draw(img).rectangle((0, 0, size[0] // 2, size[1]), fill=(230, 200, 10))
    return img


def test_each_issue_is_found_on_the_image_made_to_have_it():
    images = {f"photo{i}": noise_image(i, (160, 120)) for i in range(6)}
    images |= {
        "panorama": noise_image(10, (400, 60)),
        "gray_rgb": noise_image(11, (160, 120)).convert("L").convert("RGB"),
        "gray_file": noise_image(12, (160, 120)).convert("L"),
        "two_tone": _two_tone((160, 120)),
        "flat": Image.new("RGB", (160, 120), (120, 130, 140)),
        "huge": noise_image(13, (2000, 1600)),
    }
    issues = image_issues(_stats_table(images))
    found = {name: set(row) for name, row in zip(issues["filename"], issues["issues"])}
    assert found["panorama"] == {"odd_aspect_ratio"}
    assert found["gray_rgb"] == found["gray_file"] == {"grayscale"}
    assert found["two_tone"] == {"low_information"}  # two colours: 1 bit, yet not grayscale nor constant
    assert found["flat"] == {"low_information", "near_constant"}
    assert found["huge"] == {"odd_size"}
    assert all(found[f"photo{i}"] == set() for i in range(6))
    assert issue_counts(issues) == {"odd_aspect_ratio": 1, "odd_size": 1, "grayscale": 2, "low_information": 2,
                                    "near_constant": 1}
    assert set(issues.columns) >= {"aspect_ratio", "size_ratio", "colorfulness", "entropy", "stdv", *ISSUES}


def test_thresholds_move_the_cut_off():
    stats = _stats_table({"a": noise_image(1, (200, 100)), "b": noise_image(2, (100, 100))})
    assert issue_counts(image_issues(stats))["odd_aspect_ratio"] == 0
    assert image_issues(stats, {"odd_aspect_ratio": 0.6})["odd_aspect_ratio"].to_list() == [True, False]
    assert issue_thresholds("odd_size=4, grayscale=5")["odd_size"] == 4.0


def test_statistics_without_entropy_and_colour_judge_grayscale_from_the_file_mode():
    stats = _stats_table({"g": noise_image(1).convert("L"), "c": noise_image(2)}).drop("entropy", "colorfulness")
    issues = image_issues(stats)
    assert issues["grayscale"].to_list() == [True, False]
    assert issues["low_information"].to_list() == [False, False]


@pytest.mark.parametrize("value, named", [
    ("blurry=0.2", "blurry"), ("odd_size=1", "odd_size"), ("grayscale=-1", "grayscale"),
    ("grayscale=abc", "grayscale"), ("grayscale", "name=value"), ({"near_constant": float("nan")}, "near_constant"),
])
def test_bad_thresholds_are_config_errors_naming_the_issue(value, named):
    with pytest.raises(ConfigError, match=named):
        issue_thresholds(value)


def test_an_unknown_score_is_no_issue():
    stats = _stats_table({"a": noise_image(1), "b": noise_image(2)}).with_columns(
        width=pl.lit(0), height=pl.lit(0))  # sizes unknown: aspect and size ratios are 0/0
    issues = image_issues(stats)
    assert issues["aspect_ratio"].is_nan().all() and issues["issues"].to_list() == [[], []]


def _issue_folder(root: Path) -> Path:
    images = root / "images"
    for i in range(5):
        save_image(images / f"photo{i}.png", noise_image(i))
    save_image(images / "flat.png", Image.new("RGB", (96, 64), (120, 60, 30)))
    save_image(images / "gray.png", noise_image(9).convert("L").convert("RGB"))
    return images


def test_a_stats_only_run_writes_image_issues_and_counts_them(tmp_path):
    images = _issue_folder(tmp_path)
    work = tmp_path / "work"
    summary = run_pipeline(PipelineConfig(images, str(work)), features=False)
    issues = pl.read_parquet(work / IMAGE_ISSUES_FILE)
    found = {Path(f).name: i for f, i in zip(issues["filename"], issues["issues"].to_list())}
    assert found["flat.png"] == ["low_information", "near_constant"]
    assert found["gray.png"] == ["grayscale"]
    assert all(found[f"photo{i}.png"] == [] for i in range(5))
    assert summary.image_issues == {**dict.fromkeys(ISSUES, 0), "grayscale": 1, "low_information": 1,
                                    "near_constant": 1}
    assert "image issues: odd_aspect_ratio=0, odd_size=0, grayscale=1, low_information=1, near_constant=1" \
        in "\n".join(summary.lines())
    # new thresholds change the stage's fingerprint: recomputed, not reused
    loose = run_pipeline(PipelineConfig(images, str(work), image_issue_thresholds="grayscale=300"),
                         features=False)
    assert loose.image_issues["grayscale"] == 7
    assert pl.read_parquet(work / IMAGE_ISSUES_FILE)["grayscale"].all()


def test_a_bad_threshold_exits_2_before_anything_is_written(tmp_path):
    images = _issue_folder(tmp_path)
    for option in ("blurry=3", "grayscale=-1", "grayscale"):
        result = CliRunner().invoke(main, ["run", str(images), str(tmp_path / "work"), "--stats-only",
                                           "--image-issue-thresholds", option])
        assert result.exit_code == 2, result.output
        assert "image_issue_thresholds" in result.output and "grayscale" in result.output
        assert not (tmp_path / "work").exists()
