"""1,000 offset-range partitions (1,000 files, range_size 1): the new-images sensor and the UI.

The sensor is evaluated as the daemon evaluates it (``evaluate_tick``), and the partitions are read
back the way the UI reads them: GraphQL queries to a real ``dagster-webserver`` over the workspace,
then the asset's Partitions tab in headless Chromium.
Evaluation and query times are printed (``-s``), not asserted: the machine is shared.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from dup_pipeline.dagster_defs.automation import RANGE_END, RANGE_START
from dup_pipeline.dagster_defs.datasets import datasets_from_environment
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline_tests.dagster_defs.test_automation import (
    apply_partition_requests,
    scratch_dagster_home,
    write_datasets_yaml,
)
from dup_pipeline_tests.dagster_defs.test_ui import CHROMIUM, _free_port, _wait_for, playwright

REPO = Path(__file__).resolve().parents[2]
FILES, MATERIALIZED = 1000, 50
KEYS = [f"{i}-{i}" for i in range(FILES)]


def make_tiny_images(folder: Path, count: int, first: int = 0) -> None:
    """``count`` distinct 24x24 noise PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        pixels = np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:05d}.png")


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("partitions") / "images"
    make_tiny_images(folder, FILES)
    return folder


@pytest.fixture
def big(tiny_images, tmp_path) -> dict:
    """A copy of the 1,000 files as dataset ``big`` of range_size 1, and its definitions."""
    shutil.copytree(tiny_images, tmp_path / "images")
    config = write_datasets_yaml(tmp_path / "datasets.yaml", "big", tmp_path / "images", tmp_path / "work", 1)
    datasets = datasets_from_environment({"DUP_PIPELINE_DATASETS": str(config)})
    return {"config": config, "dataset": datasets["big"],
            "defs": build_definitions(datasets, executor=dg.in_process_executor)}


def timed_tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, dataset, times: list[float]):
    """The sensor's tick, as the daemon evaluates it; its wall time appended to ``times``."""
    start = time.perf_counter()
    with dg.build_sensor_context(instance=instance, resources={"big_dataset": dataset}) as context:
        data = sensor.evaluate_tick(context)
    times.append(time.perf_counter() - start)
    return data


def test_sensor_with_1000_partitions_registers_them_once_and_requests_one_audit(big):
    defs, dataset = big["defs"], big["dataset"]
    sensor = defs.resolve_sensor_def("big_new_images_sensor")
    instance = dg.DagsterInstance.ephemeral()
    times: list[float] = []

    first = timed_tick(sensor, instance, dataset, times)  # fresh instance: nothing registered, no manifest
    (request,) = first.run_requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("0-0", "999-999")
    assert request.tags["dup_pipeline/changes"] == "1000 new, 0 changed, 0 removed files"
    (add,) = first.dynamic_partitions_requests
    assert isinstance(add, dg.AddDynamicPartitionsRequest) and list(add.partition_keys) == KEYS
    apply_partition_requests(instance, first)

    again = timed_tick(sensor, instance, dataset, times)  # not audited yet: same run key, nothing to register
    assert again.run_requests[0].run_key == request.run_key and not again.dynamic_partitions_requests

    manifest = defs.resolve_job_def("big_manifest_job").execute_in_process(instance=instance)
    assert manifest.success and instance.get_dynamic_partitions("big_offset_ranges") == KEYS
    assert timed_tick(sensor, instance, dataset, times).skip_message == "no new, changed or removed images"

    make_tiny_images(Path(dataset.input_dir), 3, first=FILES)
    grown = timed_tick(sensor, instance, dataset, times)
    (request,) = grown.run_requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("0-0", "1002-1002")
    (add,) = grown.dynamic_partitions_requests
    assert list(add.partition_keys) == ["1000-1000", "1001-1001", "1002-1002"]  # only the new ones
    print(f"\nsensor ticks with 1,000 partitions: {', '.join(f'{t:.2f} s' for t in times)}")


QUERY = """
query Partitions($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionDefinition { type dimensionTypes { dynamicPartitionsDefinitionName } }
      partitionKeysByDimension { partitionKeys }
      partitionStats { numMaterialized numPartitions numFailed numMaterializing }
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses { materializedPartitions unmaterializedPartitions failedPartitions }
      }
    }
  }
}
"""


def graphql(port: int, query: str, variables: dict) -> tuple[dict, float]:
    """A query as the UI sends it; the answer's data and its wall time."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body,
                                     {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer
    return answer["data"], time.perf_counter() - start


@pytest.mark.slow  # a webserver start and a scan of 50 ranges: ~1 min on a loaded machine
def test_webserver_lists_1000_partitions_and_their_status(big, tmp_path, monkeypatch):
    with scratch_dagster_home(tmp_path / "home") as home:
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        monkeypatch.setenv("DUP_PIPELINE_DATASETS", str(big["config"]))
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.delenv("DUP_PIPELINE_EXECUTOR", raising=False)
        defs = big["defs"]
        with dg.DagsterInstance.get() as instance:  # the manifest, then the first 50 ranges decoded
            assert defs.resolve_job_def("big_manifest_job").execute_in_process(instance=instance).success
            scan = defs.resolve_job_def("big_scan_ranges_job").execute_in_process(
                instance=instance, tags={RANGE_START: KEYS[0], RANGE_END: KEYS[MATERIALIZED - 1]})
            assert scan.success
        _query_the_webserver(home, tmp_path)


def _partitions_page(port: int) -> None:
    """The asset's Partitions tab in headless Chromium lists the 1,000 partitions with their status."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(f"http://127.0.0.1:{port}/assets/big/features?view=partitions", wait_until="networkidle")
        page.get_by_text("1,000 Partitions Selected").first.wait_for(timeout=60_000)
        text = page.inner_text("body")
        assert f"Materialized ({MATERIALIZED})" in text and f"Missing ({FILES - MATERIALIZED})" in text
        assert "0-0" in text and "Failed (0)" in text
        print(f"partitions page shown in {time.perf_counter() - start:.1f} s")
        browser.close()


def _query_the_webserver(home: Path, tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "webserver.log"
    webserver = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent))
    with open(log, "wb") as out:
        server = subprocess.Popen([webserver, "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1",
                                   "-p", str(port)], cwd=REPO, env=os.environ.copy(), stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        started = time.perf_counter()
        _wait_for(f"http://127.0.0.1:{port}/server_info", server, log)
        variables = {"key": {"path": ["big", "features"]}}
        deadline = time.monotonic() + 180
        while True:  # the code location loads in its own process after the server answers
            data, seconds = graphql(port, QUERY, variables)
            node = data["assetNodeOrError"]
            if node["__typename"] == "AssetNode" or time.monotonic() > deadline:
                break
            time.sleep(1)
        loaded = time.perf_counter() - started
        assert node["__typename"] == "AssetNode", node
        assert node["partitionDefinition"]["dimensionTypes"][0]["dynamicPartitionsDefinitionName"] == \
            "big_offset_ranges"
        (dimension,) = node["partitionKeysByDimension"]
        assert dimension["partitionKeys"] == KEYS
        assert node["partitionStats"] == {"numMaterialized": MATERIALIZED, "numPartitions": FILES,
                                          "numFailed": 0, "numMaterializing": 0}
        statuses = node["assetPartitionStatuses"]
        assert sorted(statuses["materializedPartitions"]) == sorted(KEYS[:MATERIALIZED])  # in no set order
        assert sorted(statuses["unmaterializedPartitions"]) == sorted(KEYS[MATERIALIZED:])
        assert not statuses["failedPartitions"]
        _, again = graphql(port, QUERY, variables)
        print(f"\nwebserver: code location loaded and answered after {loaded:.1f} s; "
              f"partition keys + statuses of 1,000 partitions: {seconds:.2f} s, again {again:.2f} s")
        if not CHROMIUM.exists():
            pytest.skip(f"GraphQL checked; the page check needs {CHROMIUM} (apt-get install -y chromium)")
        _partitions_page(port)
    finally:
        server.terminate()
        server.wait(30)
