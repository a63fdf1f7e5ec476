"""Frames of videos (mp4, avi, mov, mkv, webm) with PyAV, whose wheels bundle FFmpeg.

A video is sampled in windows of ``1 / fps`` seconds from its start: window ``k`` is named by
its start time ``k / fps`` and gets the first frame decoded in it. Listing reads only the
container's header (its duration); reading decodes the video once, in order. Packets that fail
to decode are skipped, so a partly broken video keeps its good frames and the windows without a
decodable frame are reported.
"""

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from PIL import Image

DEFAULT_FPS = 1.0
_EPSILON = 5e-4  # half the millisecond precision of frame names (``#t=0.667`` for 2/3 s)
_AV_TIME_BASE = 1_000_000


class VideoError(Exception):
    """The video cannot be opened or has no video stream."""


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError("videos need PyAV: pip install 'dup-pipeline[video]'") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What the container's header says: duration in seconds, frame size and codec."""

    duration: float
    width: int
    height: int
    codec: str


def _open(handle: IO[bytes]) -> Any:
    av = _av()
    try:
        container = av.open(handle, "r")
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise VideoError(f"cannot open video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoError("no video stream")
    return container


def probe(handle: IO[bytes]) -> VideoInfo:
    """The duration, size and codec of the first video stream; :class:`VideoError` when unusable."""
    with _open(handle) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / _AV_TIME_BASE
        else:
            duration = _demuxed_duration(container, stream)
        codec = stream.codec_context
        return VideoInfo(duration, codec.width, codec.height, codec.name)


def _demuxed_duration(container: Any, stream: Any) -> float:
    """The end of the last packet, for containers whose header states no duration (read, not decoded)."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    end = start
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except (_av().error.FFmpegError, OSError):
        pass
    return end - start


def window_starts(duration: float, fps: float = DEFAULT_FPS) -> list[float]:
    """The start times of the sampling windows of a video of ``duration`` seconds (one at least)."""
    count = max(1, math.ceil(duration * fps - _EPSILON))
    return [k / fps for k in range(count)]


@dataclass(frozen=True)
class Frame:
    """The frame sampled in the window starting at ``seconds`` (``image`` reduced to ``max_side``,
    ``size`` its original width and height), or why there is none."""

    seconds: float
    image: Image.Image | None = None
    size: tuple[int, int] | None = None
    error: str | None = None


def _image(frame: Any, max_side: int | None) -> Image.Image:
    """The frame as RGB, scaled down by FFmpeg so its longer side is at most ``max_side``."""
    scale = 1.0 if max_side is None else min(1.0, max_side / max(frame.width, frame.height))
    if scale < 1.0:
        width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
        return frame.reformat(width=width, height=height, format="rgb24").to_image()
    return frame.to_image()


def iter_frames(handle: IO[bytes], seconds: Iterable[float], fps: float = DEFAULT_FPS,
                max_side: int | None = None) -> Iterator[Frame]:
    """Decode the video once and yield the frame of each window starting at one of ``seconds``.

    A window's frame is the first decoded at or after its start and before its end
    (``1 / fps`` later). Windows come in time order; one without a decodable frame comes with
    an error. Frames larger than ``max_side`` are scaled down (memory
    stays bounded when frames queue for decoding threads). Raises :class:`VideoError` when the
    video cannot be opened.
    """
    pending = sorted(set(seconds))
    width = 1.0 / fps
    av = _av()
    skipped = 0
    with _open(handle) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        decoded = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    skipped += 1
                    continue
                for frame in frames:
                    rate = float(stream.average_rate or 1)
                    at = frame.time - start if frame.time is not None else decoded / rate
                    decoded += 1
                    image = None
                    while pending and pending[0] <= at + _EPSILON:
                        window = pending.pop(0)
                        if at < window + width - _EPSILON:
                            image = image or _image(frame, max_side)
                            yield Frame(window, image, (frame.width, frame.height))
                        else:
                            damaged = f" ({skipped} damaged packets skipped)" if skipped else ""
                            yield Frame(window, error="no frame decoded in this window" + damaged)
                if not pending:
                    break
        except (av.error.FFmpegError, OSError, EOFError) as exc:
            reason = f"video data unreadable from here: {exc}"
        else:
            reason = "no frame decoded in this window"
    damaged = f" ({skipped} damaged packets skipped)" if skipped else ""
    for window in pending:
        yield Frame(window, error=reason + damaged)
