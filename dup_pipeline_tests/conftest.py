"""Shared fixtures: real image files generated on disk."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dup_pipeline.core.demo import DemoDataset, generate_demo
from dup_pipeline.core.pipeline import PipelineConfig, RunSummary, run_pipeline


def save_image(path: Path, img: Image.Image, fmt: str | None = None, **kwargs) -> Path:
    """Save ``img`` to ``path`` (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kwargs)
    return path


def noise_image(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A deterministic RGB noise image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def jpeg_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    """The built-in demo dataset, generated once per test session (read-only for tests)."""
    return generate_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def demo_run(demo_dataset: DemoDataset, tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    """The whole pipeline run once on the demo dataset with the default model (read-only for tests)."""
    work = tmp_path_factory.mktemp("demo_work")
    return run_pipeline(PipelineConfig(demo_dataset.images, str(work), range_size=40))
