"""Buckets and URLs as inputs, against real servers: moto's S3 server and a local HTTP server."""

import contextlib
import functools
import hashlib
import http.server
import importlib.util
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from moto.server import ThreadedMotoServer

from dup_pipeline.core.errors import InputError
from dup_pipeline.core.sources.catalog import (
    SourceSettings,
    content_hashes,
    expand,
    iter_payloads,
    list_prefix,
    stat_files,
)
from dup_pipeline.core.sources.remote import change_stamp, read_objects
from dup_pipeline_tests.conftest import jpeg_bytes, noise_image
from dup_pipeline_tests.core.test_sources import SCENES, SECONDS, close_to, write_video

OBJECTS = 300


def blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@contextlib.contextmanager
def local_s3_server(env: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on localhost with dummy credentials in ``env``; yields its endpoint URL."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.setenv(key, "testing")
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[SourceSettings, fsspec.AbstractFileSystem]]:
    """A real S3 server on localhost; settings whose storage options point s3fs at it."""
    with pytest.MonkeyPatch.context() as env, local_s3_server(env) as endpoint:
        options = {"s3": {"client_kwargs": {"endpoint_url": endpoint}}}
        yield SourceSettings(read_concurrency=8, storage_options=options), fsspec.filesystem("s3", **options["s3"])


@pytest.fixture(scope="module")
def bucket(s3) -> dict[str, bytes]:
    """A bucket with a few hundred small JPEGs under ``imgs/`` (some in sub-folders) and other objects."""
    _, fs = s3
    fs.mkdir("bkt")
    objects = {f"bkt/imgs/{'sub/' if i % 3 == 0 else ''}{i:04d}.jpg": jpeg_bytes(noise_image(i, (24, 16)))
               for i in range(OBJECTS)}
    objects["bkt/imgs/notes.txt"] = b"not listed: not an image"
    objects["bkt/other/x.jpg"] = jpeg_bytes(noise_image(9999))
    fs.pipe(objects)
    return {k: v for k, v in objects.items() if k.startswith("bkt/imgs/") and k.endswith(".jpg")}


def test_bucket_listing_hashes_and_bounded_reads(s3, bucket) -> None:
    settings, fs = s3
    entries = list_prefix("s3://bkt/imgs", settings)
    assert [e.name for e in entries] == sorted(f"s3://{k}" for k in bucket)
    assert all(e.size == len(bucket[e.name[5:]]) and e.stamp >= 0 for e in entries)
    names = [e.name for e in entries]
    assert dict(content_hashes(names, settings)) == {f"s3://{k}": blake(v) for k, v in bucket.items()}
    payloads = list(iter_payloads(names, settings))
    assert [p.name for p in payloads] == names
    assert all(p.data == bucket[p.name[5:]] for p in payloads)


def test_new_and_rewritten_objects_change_the_listing(s3, bucket) -> None:
    settings, fs = s3
    fs.pipe({"bkt/grow/a.jpg": b"1111", "bkt/grow/b.jpg": b"2222"})
    before = {e.name: e for e in list_prefix("s3://bkt/grow", settings)}
    fs.pipe({"bkt/grow/c.jpg": b"3333", "bkt/grow/b.jpg": b"2223"})  # same size, same second: the ETag tells
    after = {e.name: e for e in list_prefix("s3://bkt/grow", settings)}
    assert sorted(set(after) - set(before)) == ["s3://bkt/grow/c.jpg"]
    assert after["s3://bkt/grow/a.jpg"] == before["s3://bkt/grow/a.jpg"]
    assert after["s3://bkt/grow/b.jpg"].stamp != before["s3://bkt/grow/b.jpg"].stamp
    assert after["s3://bkt/grow/b.jpg"].size == before["s3://bkt/grow/b.jpg"].size


def test_missing_objects_and_prefixes(s3, bucket) -> None:
    settings, _ = s3
    gone = "s3://bkt/imgs/nope.jpg"
    assert stat_files([gone], settings)[0].size == -1
    [payload] = iter_payloads([gone], settings)
    assert payload.error[0] == "missing"
    with pytest.raises(InputError, match="does not exist"):
        list_prefix("s3://bkt/no_such_prefix", settings)


def test_shard_and_video_in_a_bucket(s3, bucket, tmp_path: Path) -> None:
    settings, fs = s3
    members = {f"k{i}.jpg": jpeg_bytes(noise_image(100 + i)) for i in range(5)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    fs.pipe({"bkt/shards/s-000.tar.gz": buf.getvalue(),
             "bkt/shards/v.mkv": write_video(tmp_path / "v.mkv", "matroska").read_bytes()})
    entries = expand(list_prefix("s3://bkt/shards", settings), settings)
    assert [e.name for e in entries] == ([f"s3://bkt/shards/s-000.tar.gz/{k}" for k in sorted(members)]
                                         + [f"s3://bkt/shards/v.mkv#t={s}.000" for s in range(SECONDS)])
    assert {e.content_hash for e in entries[:5]} == {blake(v) for v in members.values()}
    payloads = list(iter_payloads([e.name for e in entries], settings))
    assert {p.name.rsplit("/", 1)[1]: p.data for p in payloads[:5]} == members
    assert all(close_to(p.frame, SCENES[s]) for s, p in enumerate(payloads[5:]))


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder of images."""
    root = tmp_path_factory.mktemp("www")
    for i in range(5):
        (root / f"{i}.jpg").write_bytes(jpeg_bytes(noise_image(200 + i)))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", root
    finally:
        server.shutdown()
        thread.join()


def test_http_urls_stat_read_and_list(web) -> None:
    base, root = web
    settings = SourceSettings(read_concurrency=2)
    urls = [f"{base}/{i}.jpg" for i in range(5)] + [f"{base}/missing.jpg"]
    stated = stat_files(urls, settings)
    assert [e.size for e in stated] == [(root / f"{i}.jpg").stat().st_size for i in range(5)] + [-1]
    assert all(e.stamp >= 0 for e in stated[:5])
    payloads = {p.name: p for p in iter_payloads(urls, settings)}
    assert all(payloads[u].data == (root / f"{i}.jpg").read_bytes() for i, u in enumerate(urls[:5]))
    assert payloads[urls[5]].error[0] == "missing"
    listed = list_prefix(base + "/", settings)  # the server's index page, sizes asked for one by one
    assert [e.name for e in listed] == urls[:5] and [e.size for e in listed] == [e.size for e in stated[:5]]


def test_bounded_reads_keep_order_and_report_errors(web) -> None:
    base, root = web
    urls = [f"{base}/{i % 5}.jpg" if i != 7 else f"{base}/gone.jpg" for i in range(20)]
    got = list(read_objects(urls, concurrency=3))
    assert [u for u, _ in got] == urls
    assert isinstance(got[7][1], FileNotFoundError)
    assert got[3][1] == (root / "3.jpg").read_bytes()


def test_change_stamp_from_listing_fields() -> None:
    assert change_stamp({"size": 3}) == -1
    a = change_stamp({"LastModified": "2026-01-01", "ETag": '"x"'})
    assert a >= 0 and a != change_stamp({"LastModified": "2026-01-01", "ETag": '"y"'})


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed")
def test_missing_extra_names_the_extra() -> None:
    with pytest.raises(InputError, match=r"dup-pipeline\[gcs\]"):
        list_prefix("gs://bucket/prefix", SourceSettings())


def test_store_without_credentials_is_an_input_error(s3, monkeypatch) -> None:
    settings, _ = s3
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = {"s3": {**settings.storage_options["s3"], "skip_instance_cache": True}}
    bare = SourceSettings(storage_options=options)
    with pytest.raises(InputError, match="cannot list 's3://bkt/imgs'.*[Cc]redentials"):
        list_prefix("s3://bkt/imgs", bare)
    with pytest.raises(InputError, match="cannot read 's3://bkt/imgs/0001.jpg'"):
        stat_files(["s3://bkt/imgs/0001.jpg"], bare)
