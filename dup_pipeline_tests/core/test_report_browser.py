"""The report in headless Chromium: it renders, its thumbnails show, and it logs nothing to the console."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dup_pipeline.core.report.browser import CHROMIUM, dump_dom, screenshot

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} not found (apt-get install -y chromium)")
SCRIPT = Path(__file__).parents[2] / "scripts" / "screenshot_report.py"


def _colourful(png: Path) -> float:
    """Fraction of saturated pixels: the thumbnails, as the page chrome is grey and white."""
    hsv = np.asarray(Image.open(png).convert("HSV"))
    return float(((hsv[..., 1] > 128) & (hsv[..., 2] > 80)).mean())


def test_report_renders_in_chromium(demo_run, demo_dataset, tmp_path):
    spec = importlib.util.spec_from_file_location("screenshot_report", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pages = ["index", "duplicates"]
    assert script.main([str(tmp_path), "--work-dir", demo_run.work_dir, "--labels", str(demo_dataset.labels),
                        "--pages", *pages]) == 0
    for page in pages:
        with Image.open(tmp_path / f"{page}.png") as png:
            assert png.size == (1280, 2000)
        assert _colourful(tmp_path / f"{page}.png") > 0.03, page
    dom, messages = dump_dom(tmp_path / "report" / "index.html")
    assert messages == []
    assert "Image dataset report" in dom and 'id="duplicates"' in dom and dom.count("<img") > 20


def test_console_errors_are_caught(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>missingFunction()</script></body></html>")
    messages = screenshot(page, tmp_path / "broken.png", 320, 240)
    assert any("Uncaught ReferenceError" in m for m in messages)
