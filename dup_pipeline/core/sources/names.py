"""Manifest names of everything that is not a plain local image file.

- a URL (``s3://bucket/a.jpg``, ``https://host/a.jpg``, any fsspec protocol) names an object;
- ``<shard>/<member>`` names a member of a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` shard
  (``/data/shard-0001.tar/cats/001.jpg``, ``s3://bucket/shard.tar/001.jpg``);
- ``<video>#t=<seconds>`` names the frame of a video at that time (``/data/clip.mp4#t=12.000``,
  the media-fragment syntax).
"""

import os
import posixpath
import re
from dataclasses import dataclass

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
FRAME_MARK = "#t="
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")
_FRAME = re.compile(r"^(?P<video>.+)#t=(?P<time>\d+(?:\.\d+)?)$")


def is_url(name: str | os.PathLike[str]) -> bool:
    """True for ``protocol://…`` names (``file://`` included); Windows drive letters are not URLs."""
    return isinstance(name, str) and bool(_URL.match(name))


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def is_video(name: str) -> bool:
    return posixpath.splitext(name.lower())[1] in VIDEO_EXTENSIONS


def frame_name(video: str, seconds: float) -> str:
    """The manifest name of the frame of ``video`` at ``seconds`` (millisecond precision)."""
    return f"{video}{FRAME_MARK}{seconds:.3f}"


def member_name(shard: str, member: str) -> str:
    return f"{shard}/{member}"


@dataclass(frozen=True)
class Located:
    """Where a manifest name's bytes are: ``container`` is a file or object name.

    ``kind`` is ``file`` (the container itself), ``member`` (``member`` of the shard ``container``)
    or ``frame`` (the frame of the video ``container`` at ``seconds``).
    """

    kind: str
    container: str
    member: str | None = None
    seconds: float | None = None


def locate(name: str) -> Located:
    """Split a manifest name into its container and the part inside it.

    A path component ending in an archive suffix and followed by more components is a shard when
    it is a URL or not a local folder (a local folder named ``x.tar`` stays a folder).
    """
    frame = _FRAME.match(name)
    if frame and is_video(frame["video"]):
        return Located("frame", frame["video"], seconds=float(frame["time"]))
    head, sep, rest = name.partition("://")
    parts = (rest if sep else name).split("/")
    for i in range(len(parts) - 1):
        if is_archive(parts[i]):
            shard = "/".join(parts[: i + 1])
            shard = f"{head}://{shard}" if sep else shard
            if sep or not os.path.isdir(shard):
                return Located("member", shard, member="/".join(parts[i + 1:]))
    return Located("file", name)

