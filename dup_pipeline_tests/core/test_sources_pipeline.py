"""The whole pipeline on a bucket (moto's S3 server), on a folder of shards and videos, and on a
list mixing local paths and URLs; reruns and the new-images sensor pick up only what is new;
reports embed the thumbnails of remote images, members and frames."""

import io
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import fsspec
import polars as pl
import pytest
from s3fs import S3FileSystem

from dup_pipeline.core.changes import input_changes
from dup_pipeline.core.pipeline import PipelineConfig, run_pipeline
from dup_pipeline.core.sources.catalog import SourceSettings
from dup_pipeline.core.workdir import WorkDir
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline_tests.conftest import jpeg_bytes, noise_image
from dup_pipeline_tests.core.test_sources import SCENES, write_video
from dup_pipeline_tests.core.test_sources_remote import local_s3_server

IMAGES = 60


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A real S3 server on localhost, reached through the store's usual environment variables."""
    with pytest.MonkeyPatch.context() as env, local_s3_server(env) as url:
        env.setenv("AWS_ENDPOINT_URL", url)
        S3FileSystem.clear_instance_cache()  # a cached client would point at another test's server
        try:
            yield url
        finally:
            S3FileSystem.clear_instance_cache()


def images() -> dict[str, bytes]:
    """Distinct images plus planted copies: 0003 = 0000 byte for byte, 0005 = 0001 re-encoded;
    0007 is truncated."""
    data = {f"{i:04d}.jpg": jpeg_bytes(noise_image(i, (96, 64))) for i in range(IMAGES)}
    data["0003.jpg"] = data["0000.jpg"]
    data["0005.jpg"] = jpeg_bytes(noise_image(1, (96, 64)), quality=70)
    data["0007.jpg"] = data["0007.jpg"][:300]
    return data


def test_bucket_end_to_end_and_new_object_alone_on_rerun(endpoint, tmp_path: Path) -> None:
    fs = fsspec.filesystem("s3")
    fs.mkdir("e2e")
    data = images()
    fs.pipe({f"e2e/imgs/{k}": v for k, v in data.items()})
    config = PipelineConfig("s3://e2e/imgs", str(tmp_path / "work"), range_size=25)
    first = run_pipeline(config)
    assert (first.files, first.bad, first.decoded) == (IMAGES, 1, IMAGES)
    manifest = pl.read_parquet(tmp_path / "work" / "manifest.parquet")
    assert manifest["path"].to_list() == [f"s3://e2e/imgs/{k}" for k in sorted(data)]
    assert manifest["size"].to_list() == [len(data[k]) for k in sorted(data)]
    pairs = pl.read_parquet(tmp_path / "work" / "similarity.parquet")
    found = set(zip(pairs["filename_from"], pairs["filename_to"]))
    assert ("s3://e2e/imgs/0000.jpg", "s3://e2e/imgs/0003.jpg") in found
    assert ("s3://e2e/imgs/0001.jpg", "s3://e2e/imgs/0005.jpg") in found
    bad = pl.read_parquet(tmp_path / "work" / "bad_files.parquet")
    assert bad.select("filename", "error_code").rows() == [("s3://e2e/imgs/0007.jpg", "corrupt")]
    report = (tmp_path / "work" / "report" / "duplicates.html").read_text()
    assert "s3://e2e/imgs/0003.jpg" in report
    sources = re.findall(r'src="([^"]+)"', report)
    assert sources and all(s.startswith("data:image/jpeg;base64,") for s in sources)  # thumbnails made now

    work = WorkDir(tmp_path / "work")
    assert not input_changes(work, "s3://e2e/imgs").any
    fs.pipe({"e2e/imgs/0100.jpg": jpeg_bytes(noise_image(100, (96, 64)))})
    changes = input_changes(work, "s3://e2e/imgs")
    assert (changes.added, changes.modified, changes.removed) == (["s3://e2e/imgs/0100.jpg"], [], [])
    second = run_pipeline(config)
    assert (second.files, second.decoded) == (IMAGES + 1, 1)


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> None:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_shards_and_videos_folder_end_to_end_with_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "shards"
    root.mkdir()
    data = images()
    names = sorted(data)
    write_tar(root / "s-000.tar", {f"train/{k}": data[k] for k in names[:30]})
    write_tar(root / "s-001.tar.gz", {f"train/deep/{k}": data[k] for k in names[30:]}, "w:gz")
    with zipfile.ZipFile(root / "s-002.zip", "w") as archive:
        archive.writestr("copy.jpg", data["0002.jpg"])
    clip = write_video(root / "clip.mkv", "matroska")
    broken = root / "broken.mp4"
    broken.write_bytes(b"\0" * 2048)
    run = [sys.executable, "-c", "from dup_pipeline.cli import main; main()", "run", str(root),
           str(tmp_path / "work"), "--quiet", "--range-size", "40"]
    done = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    manifest = pl.read_parquet(tmp_path / "work" / "manifest.parquet")
    assert manifest.height == IMAGES + 1 + len(SCENES) + 1
    bad = pl.read_parquet(tmp_path / "work" / "bad_files.parquet").select("filename", "error_code")
    bad = dict(bad.rows())
    assert bad == {f"{root}/s-000.tar/train/0007.jpg": "corrupt", str(broken): "corrupt"}
    pairs = pl.read_parquet(tmp_path / "work" / "similarity.parquet")
    found = set(zip(pairs["filename_from"], pairs["filename_to"]))
    assert (f"{root}/s-000.tar/train/0002.jpg", f"{root}/s-002.zip/copy.jpg") in found
    frames = [f"{clip}#t={s}.000" for s, scene in enumerate(SCENES) if scene == 0]  # one picture, 3 times
    assert {(a, b) for a in frames for b in frames if a < b} <= found
    report = (tmp_path / "work" / "report" / "duplicates.html").read_text()
    assert "clip.mkv#t=3.000" in report and "s-002.zip/copy.jpg" in report
    assert all(s.startswith("data:image/jpeg;base64,") for s in re.findall(r'src="([^"]+)"', report))

    (root / "s-003.tar").write_bytes(b"")  # a new shard that is not an archive, and a new real one
    write_tar(root / "s-004.tar", {"new.jpg": jpeg_bytes(noise_image(500, (96, 64)))})
    again = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "images decoded this run: 2," in again.stdout


def test_list_mixing_local_paths_and_urls(endpoint, tmp_path: Path) -> None:
    fs = fsspec.filesystem("s3")
    fs.mkdir("mixed")
    fs.pipe({"mixed/a.jpg": jpeg_bytes(noise_image(1, (96, 64))),
             "mixed/b.jpg": jpeg_bytes(noise_image(2, (96, 64)))})
    (tmp_path / "local.jpg").write_bytes(jpeg_bytes(noise_image(1, (96, 64))))
    listing = tmp_path / "list.txt"
    listing.write_text("local.jpg\ns3://mixed/a.jpg\ns3://mixed/b.jpg\ns3://mixed/gone.jpg\n")
    config = PipelineConfig(str(listing), str(tmp_path / "work"), sources=SourceSettings(video_fps=2))
    summary = run_pipeline(config)
    assert (summary.files, summary.good, summary.bad_reasons) == (4, 3, {"missing": 1})
    assert summary.exact_duplicate_groups == 1  # local.jpg and s3://mixed/a.jpg have the same bytes


def test_new_images_sensor_sees_only_the_new_object(endpoint, tmp_path: Path) -> None:
    fs = fsspec.filesystem("s3")
    fs.mkdir("watched")
    fs.pipe({f"watched/imgs/{i}.jpg": jpeg_bytes(noise_image(300 + i, (96, 64))) for i in range(7)})
    dataset = DatasetResource(input_dir="s3://watched/imgs", work_dir=str(tmp_path / "work"), range_size=5)
    sensor = build_definitions({"bkt": dataset}, executor=dg.in_process_executor).resolve_sensor_def(
        "bkt_new_images_sensor")
    instance = dg.DagsterInstance.ephemeral()

    def tick_changes() -> str | None:
        with dg.build_sensor_context(instance=instance, resources={"bkt_dataset": dataset}) as context:
            data = sensor.evaluate_tick(context)
        return data.run_requests[0].tags["dup_pipeline/changes"] if data.run_requests else None

    assert tick_changes() == "7 new, 0 changed, 0 removed files"
    run_pipeline(dataset.pipeline_config(), features=False)
    assert tick_changes() is None
    fs.pipe({"watched/imgs/new.jpg": jpeg_bytes(noise_image(400, (96, 64)))})
    assert tick_changes() == "1 new, 0 changed, 0 removed files"


def test_decode_payload_of_bytes_frames_and_errors(tmp_path: Path) -> None:
    from PIL import Image

    from dup_pipeline.core.decode import BadFile
    from dup_pipeline.core.sources.catalog import Payload
    from dup_pipeline.core.sources.reading import decode_payload, open_images

    buf = io.BytesIO()
    noise_image(3, (40, 30)).save(buf, "PNG")
    png = buf.getvalue()
    decoded = decode_payload(Payload("s3://b/x.png", data=png), max_pixels=10**8, min_side=10)
    assert (decoded.width, decoded.height, decoded.format) == (40, 30, "PNG")
    damaged = png[:-20] + bytes(20)  # the PNG verification pass reads the bytes again
    with pytest.raises(BadFile) as bad:
        decode_payload(Payload("s3://b/y.png", data=damaged), max_pixels=10**8, min_side=10)
    assert bad.value.reason == "corrupt"
    frame = Image.new("RGB", (512, 288))
    decoded = decode_payload(Payload("v.mp4#t=1.000", frame=frame, frame_size=(1280, 720)), 10**8, 10)
    assert (decoded.width, decoded.height, decoded.format, decoded.image.size) == (1280, 720, "VIDEO_FRAME",
                                                                                    (512, 288))
    with pytest.raises(BadFile, match="too_large"):
        decode_payload(Payload("v.mp4#t=1.000", frame=frame, frame_size=(1280, 720)), 1000, 10)
    with pytest.raises(BadFile, match="missing"):
        decode_payload(Payload("s3://b/gone.jpg", error=("missing", "object no longer exists")), 10**8, 10)
    clip = write_video(tmp_path / "clip.mkv", "matroska")
    opened = dict(open_images([f"{clip}#t=2.000", f"{tmp_path}/nope.tar/a.jpg"], SourceSettings()))
    assert opened[f"{clip}#t=2.000"].size == (128, 96) and opened[f"{tmp_path}/nope.tar/a.jpg"] is None
