"""The Dagster UI after a scheduled audit: a real ``dagster-webserver`` over the audited instance,
driven by headless Chromium (Playwright with the system browser): the asset pages show the counts
and the paths the audit recorded."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from dup_pipeline.dagster_defs.datasets import datasets_from_environment
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline_tests.dagster_defs.test_automation import make_folder_with_duplicates

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (apt-get install -y chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s: {log.read_text()[-3000:]}")


def test_asset_pages_show_the_audit_counts_and_report_path(tmp_path, monkeypatch):
    images, work, home = tmp_path / "images", tmp_path / "work", tmp_path / "home"
    make_folder_with_duplicates(images)
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = tmp_path / "datasets.yaml"
    config.write_text(f"datasets:\n  web:\n    input_dir: {images}\n    work_dir: {work}\n    range_size: 6\n")
    monkeypatch.setenv("DUP_PIPELINE_DATASETS", str(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    datasets = datasets_from_environment()
    defs = build_definitions(datasets, executor=dg.in_process_executor)
    with dg.DagsterInstance.get() as instance:  # the audit, as the schedule starts it
        schedule = defs.resolve_schedule_def("web_audit_schedule")
        with dg.build_schedule_context(instance=instance, resources={"web_dataset": datasets["web"]},
                                       scheduled_execution_time=datetime(2026, 1, 5, 3, tzinfo=UTC)) as context:
            (request,) = schedule.evaluate_tick(context).run_requests
        assert defs.resolve_job_def("web_audit_job").execute_in_process(instance=instance, tags=request.tags).success

    port = _free_port()
    log = tmp_path / "webserver.log"
    webserver = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent))
    with open(log, "wb") as out:
        server = subprocess.Popen([webserver, "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                                  cwd=REPO, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", server, log)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/assets/web/report?view=events", wait_until="networkidle")
            page.get_by_text(str(work / "report" / "index.html")).first.wait_for(timeout=60_000)
            text = page.inner_text("body")
            assert "duplicate_pairs" in text and "outliers" in text
            page.goto(f"http://127.0.0.1:{port}/assets/web/similarity?view=events", wait_until="networkidle")
            page.get_by_text("duplicate_fraction").first.wait_for(timeout=60_000)
            text = page.inner_text("body")
            assert str(work / "similarity.parquet") in text and "pairs" in text
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
