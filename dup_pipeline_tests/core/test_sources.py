"""Shards and videos as inputs: names, one-pass reads, corrupt members and partly broken videos."""

import hashlib
import io
import os
import tarfile
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from dup_pipeline.core.errors import ConfigError
from dup_pipeline.core.sources.catalog import (
    Entry,
    PayloadFeed,
    SourceSettings,
    discover,
    expand,
    iter_payloads,
    reading_order,
    stat_files,
)
from dup_pipeline.core.sources.names import locate
from dup_pipeline.core.sources.archives import ShardError, iter_members
from dup_pipeline.core.sources.names import frame_name
from dup_pipeline.core.sources.video import VideoError, iter_frames, probe, window_starts
from dup_pipeline_tests.conftest import jpeg_bytes, noise_image

SETTINGS = SourceSettings()


def blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def members() -> dict[str, bytes]:
    """Nested members in the webdataset layout (``key.jpg`` beside ``key.cls``) and a corrupt image."""
    return {
        "train/cats/001.jpg": jpeg_bytes(noise_image(1)),
        "train/cats/001.cls": b"3",
        "train/dogs/deep/002.jpg": jpeg_bytes(noise_image(2)),
        "003.png": _png(noise_image(3)),
        "broken.jpg": jpeg_bytes(noise_image(4))[:200],
    }


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as archive:
        archive.add(path.parent, arcname="./ignored_folder", recursive=False)  # a folder member
        for name, data in members.items():
            add_bytes(archive, "./" + name, data)
    return path


def local_entries(paths: list[Path], settings: SourceSettings = SETTINGS, previous=None) -> list[Entry]:
    return expand(stat_files([str(p) for p in paths], settings), settings, previous)


def test_names_locate_members_frames_and_plain_files(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "s.tar", {"a/b.jpg": b"x"})
    (tmp_path / "folder.tar").mkdir()
    assert locate(f"{shard}/a/b.jpg") == locate(f"{shard}/a/b.jpg")
    where = locate(f"{shard}/a/b.jpg")
    assert (where.kind, where.container, where.member) == ("member", str(shard), "a/b.jpg")
    assert locate(f"{tmp_path}/folder.tar/x.jpg").kind == "file"  # a folder named .tar is a folder
    assert locate("s3://bkt/p/shard.tar.gz/x/y.jpg").container == "s3://bkt/p/shard.tar.gz"
    clip = locate(frame_name("/v/clip.mp4", 12))
    assert (clip.kind, clip.container, clip.seconds) == ("frame", "/v/clip.mp4", 12.0)
    assert frame_name("/v/clip.mp4", 12) == "/v/clip.mp4#t=12.000"
    assert locate("/x/photo#t=1.000.jpg").kind == "file"


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz")])
def test_tar_shard_members_listed_hashed_and_read_in_one_pass(tmp_path: Path, members, suffix, mode) -> None:
    shard = write_tar(tmp_path / f"shard{suffix}", members, mode)
    entries = local_entries([shard])
    images = {k: v for k, v in members.items() if not k.endswith(".cls")}
    assert [e.name for e in entries] == sorted(f"{shard}/{k}" for k in images)
    assert {e.name: (e.size, e.content_hash) for e in entries} == {
        f"{shard}/{k}": (len(v), blake(v)) for k, v in images.items()}
    assert {e.stamp for e in entries} == {os.stat(shard).st_mtime_ns}
    payloads = {p.name: p for p in iter_payloads([e.name for e in entries], SETTINGS)}
    assert {n: p.data for n, p in payloads.items()} == {f"{shard}/{k}": v for k, v in images.items()}


def test_zip_member_with_bad_crc_is_bad_and_the_rest_kept(tmp_path: Path, members) -> None:
    shard = tmp_path / "shard.zip"
    with zipfile.ZipFile(shard, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    raw = bytearray(shard.read_bytes())
    target = members["train/dogs/deep/002.jpg"]
    at = raw.find(target) + len(target) // 2
    raw[at] ^= 0xFF  # damage the stored bytes: the member's CRC no longer matches
    shard.write_bytes(bytes(raw))
    entries = local_entries([shard])
    assert len(entries) == 4
    damaged = f"{shard}/train/dogs/deep/002.jpg"
    assert [e.content_hash for e in entries if e.name == damaged] == [None]
    payloads = {p.name: p for p in iter_payloads([e.name for e in entries], SETTINGS)}
    assert payloads[damaged].error[0] == "corrupt" and "CRC" in payloads[damaged].error[1]
    assert payloads[f"{shard}/003.png"].data == members["003.png"]
    assert payloads[f"{shard}/train/cats/001.jpg"].data == members["train/cats/001.jpg"]


def test_truncated_tar_gz_keeps_members_before_the_damage(tmp_path: Path) -> None:
    data = {f"m/{i:03d}.png": _png(noise_image(i, (64, 64))) for i in range(6)}
    shard = write_tar(tmp_path / "t.tar.gz", data, "w:gz")
    full = local_entries([shard])
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size * 2 // 3])
    entries = local_entries([shard])
    assert 0 < len(entries) < 6
    payloads = list(iter_payloads([e.name for e in full], SETTINGS))
    good = [p for p in payloads if p.data is not None]
    assert all(p.data == data[locate(p.name).member] for p in good)
    assert len(good) >= len(entries) - 1
    bad = [p for p in payloads if p.error is not None]
    assert len(good) + len(bad) == 6 and {p.error[0] for p in bad} <= {"corrupt", "missing"}


def test_not_an_archive_is_one_bad_entry(tmp_path: Path) -> None:
    shard = tmp_path / "fake.tar"
    shard.write_bytes(b"\x89not a tar at all" * 3)
    with pytest.raises(ShardError), open(shard, "rb") as handle:
        list(iter_members(handle, str(shard), lambda _: True))
    entries = local_entries([shard])
    assert [e.name for e in entries] == [str(shard)]
    [payload] = iter_payloads([str(shard)], SETTINGS)
    assert payload.error[0] == "corrupt" and "archive" in payload.error[1]


def test_unchanged_shard_is_not_opened_again(tmp_path: Path, members) -> None:
    shard = write_tar(tmp_path / "s.tar", members)
    first = local_entries([shard])
    previous = {e.name: (e.size, e.stamp, e.content_hash) for e in first}
    st = shard.stat()
    write_tar(shard, {"other.jpg": b"y"})
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # same stamp: the listing is reused unread
    assert local_entries([shard], previous=previous) == first
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert [e.name for e in local_entries([shard], previous=previous)] == [f"{shard}/other.jpg"]


# ---- videos -------------------------------------------------------------------------------------

FPS = 5
SECONDS = 8
# one scene per second; scenes 0, 3 and 6 are the same picture (repeated frames)
SCENES = [0, 1, 2, 0, 4, 5, 0, 7]


def scene(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))  # 96 x 128 of flat 16 px blocks


def write_video(path: Path, fmt: str, scenes: list[int] = SCENES) -> Path:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.options = {"qscale": "2"}
        for s in scenes:
            for _ in range(FPS):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(scene(s), format="rgb24")))
        container.mux(stream.encode())
    return path


def close_to(img: Image.Image, i: int) -> bool:
    return float(np.abs(np.asarray(img, dtype=np.float32) - scene(i)).mean()) < 6.0


@pytest.mark.parametrize("name,fmt", [("clip.mp4", "mp4"), ("clip.mkv", "matroska"), ("clip.avi", "avi")])
def test_video_frames_one_per_second_with_repeated_frames(tmp_path: Path, name, fmt) -> None:
    clip = write_video(tmp_path / name, fmt)
    with open(clip, "rb") as handle:
        assert round(probe(handle).duration) == SECONDS
    entries = local_entries([clip])
    assert [e.name for e in entries] == [frame_name(str(clip), s) for s in range(SECONDS)]
    hashes = {e.content_hash for e in entries}
    assert len(hashes) == SECONDS and {e.size for e in entries} == {clip.stat().st_size}
    frames = {locate(p.name).seconds: p.frame for p in iter_payloads([e.name for e in entries], SETTINGS)}
    assert sorted(frames) == list(range(SECONDS))
    for second, img in frames.items():
        assert img.size == (128, 96) and close_to(img, SCENES[int(second)])
    assert not close_to(frames[1], 0)


def test_video_fps_setting_samples_more_windows(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mkv", "matroska")
    settings = SourceSettings(video_fps=2.5)
    entries = local_entries([clip], settings)
    assert [locate(e.name).seconds for e in entries] == [round(k * 0.4, 3) for k in range(20)]
    assert len(window_starts(SECONDS, 2.5)) == 20
    frames = list(iter_payloads([e.name for e in entries], settings))
    assert len(frames) == 20 and all(p.frame is not None for p in frames)
    # a listing made at another rate is not reused
    previous = {e.name: (e.size, e.stamp, e.content_hash) for e in entries}
    assert len(local_entries([clip], SETTINGS, previous)) == SECONDS


def test_partly_broken_video_keeps_its_good_frames(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mkv", "matroska")
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # the header still says 8 s
    entries = local_entries([clip])
    assert len(entries) == SECONDS
    payloads = {locate(p.name).seconds: p for p in iter_payloads([e.name for e in entries], SETTINGS)}
    good = sorted(s for s, p in payloads.items() if p.frame is not None)
    bad = sorted(s for s, p in payloads.items() if p.error is not None)
    assert good and bad and good + bad == list(range(SECONDS)) and max(good) < min(bad)
    assert all(close_to(payloads[s].frame, SCENES[int(s)]) for s in good)
    assert {payloads[s].error[0] for s in bad} == {"corrupt"}


def test_video_that_cannot_be_opened_is_one_bad_entry(tmp_path: Path) -> None:
    clip = tmp_path / "broken.mp4"
    clip.write_bytes(os.urandom(4096))
    entries = local_entries([clip])
    assert [e.name for e in entries] == [str(clip)]
    [payload] = iter_payloads([str(clip)], SETTINGS)
    assert payload.error[0] == "corrupt" and "video" in payload.error[1]
    with pytest.raises(VideoError), open(clip, "rb") as handle:
        list(iter_frames(handle, [0.0]))


def test_missing_member_and_missing_shard_are_reported(tmp_path: Path, members) -> None:
    shard = write_tar(tmp_path / "s.tar", members)
    gone = f"{shard}/not/there.jpg"
    [payload] = iter_payloads([gone], SETTINGS)
    assert payload.error == ("missing", "no longer in the shard")
    names = [f"{shard}/003.png"]
    shard.unlink()
    assert [p.error[0] for p in iter_payloads(names, SETTINGS)] == ["missing"]


@pytest.mark.parametrize("field,value", [("video_fps", 0), ("video_fps", float("nan")), ("video_fps", "1"),
                                         ("read_concurrency", 0), ("read_concurrency", 2.5)])
def test_bad_source_settings_name_the_parameter(field, value) -> None:
    with pytest.raises(ConfigError, match=field):
        SourceSettings(**{field: value})


def test_fifo_named_like_a_shard_or_a_video_is_never_opened(tmp_path: Path) -> None:
    names = [str(tmp_path / "s.tar"), str(tmp_path / "v.mp4")]
    for name in names:
        os.mkfifo(name)  # opening one for reading would block forever
    assert [e.name for e in discover(names, SETTINGS)] == names
    reasons = {p.name: p.error[0] for p in iter_payloads(names, SETTINGS)}
    assert reasons == dict.fromkeys(names, "not_a_regular_file")


def test_window_without_frames_is_reported_not_filled_from_the_next(tmp_path: Path) -> None:
    """A second without frames (a gap in the timestamps) is a bad frame; the next second keeps its own."""
    clip = tmp_path / "gap.mkv"
    with av.open(str(clip), "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for k in [k for k in range(4 * FPS) if not FPS <= k < 2 * FPS]:  # nothing in [1 s, 2 s)
            frame = av.VideoFrame.from_ndarray(scene(k // FPS), format="rgb24")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    entries = local_entries([clip])
    assert [locate(e.name).seconds for e in entries] == [0, 1, 2, 3]
    payloads = {locate(p.name).seconds: p for p in iter_payloads([e.name for e in entries], SETTINGS)}
    assert payloads[1].frame is None and payloads[1].error == ("corrupt", "no frame decoded in this window")
    assert all(close_to(payloads[s].frame, s) for s in (0, 2, 3))


def test_large_frames_are_scaled_down_with_their_original_size_kept(tmp_path: Path) -> None:
    clip = tmp_path / "big.mkv"
    with av.open(str(clip), "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        pixels = np.kron(scene(5), np.ones((10, 10, 1), np.uint8))[:720]
        for _ in range(FPS * 2):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    payloads = list(iter_payloads([e.name for e in local_entries([clip])], SETTINGS))
    assert len(payloads) == 2
    assert all(p.frame.size == (512, 288) and p.frame_size == (1280, 720) for p in payloads)


def test_every_frame_sampled_when_names_round_the_time_up(tmp_path: Path) -> None:
    """At 3 fps the window of 2/3 s is named ``#t=0.667``, after its frame's time (0.6667 s)."""
    clip = tmp_path / "thirds.mp4"
    with av.open(str(clip), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=3)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for k in range(6):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(scene(k), format="rgb24")))
        container.mux(stream.encode())
    settings = SourceSettings(video_fps=3)
    entries = local_entries([clip], settings)
    names = ["0.000", "0.333", "0.667", "1.000", "1.333", "1.667"]
    assert [e.name.rsplit("=", 1)[1] for e in entries] == names
    payloads = {locate(p.name).seconds: p for p in iter_payloads([e.name for e in entries], settings)}
    assert all(close_to(payloads[round(k / 3, 3)].frame, k) for k in range(6))


def test_reading_order_groups_containers_and_sorts_frames_by_time() -> None:
    names = ["/d/a.jpg", "/d/s.tar/m2.jpg", "s3://b/1.jpg", "s3://b/2.jpg", "/d/v.mp4#t=10.000",
             "/d/v.mp4#t=2.000", "/d/s.tar/m1.jpg", "/d/z.jpg"]
    assert reading_order(names) == [0, 1, 6, 2, 3, 5, 4, 7]


def test_payload_feed_hands_out_members_in_any_order(tmp_path: Path, members) -> None:
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as archive:  # stored in reverse name order
        for name in sorted(members, reverse=True):
            add_bytes(archive, name, members[name])
    names = [e.name for e in local_entries([shard])]
    feed = PayloadFeed(names, SETTINGS)
    assert [feed.get(n).data for n in names] == [members[locate(n).member] for n in names]
    with pytest.raises(KeyError):
        feed.get(f"{shard}/other.jpg")


def test_two_names_of_one_frame_both_read(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mkv", "matroska")
    names = [f"{clip}#t=1", f"{clip}#t=1.000"]
    payloads = list(iter_payloads(names, SETTINGS))
    assert sorted(p.name for p in payloads) == sorted(names)
    assert all(close_to(p.frame, SCENES[1]) for p in payloads)
