"""Offset-range partitions of the manifest: fixed-size, nominal keys like ``0-9999``."""

from dataclasses import dataclass

from dup_pipeline.core.errors import ConfigError

DEFAULT_RANGE_SIZE = 10_000


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Manifest indexes ``start`` to ``end`` inclusive (a nominal, full-size range)."""

    start: int
    end: int

    @property
    def key(self) -> str:
        return f"{self.start}-{self.end}"

    @classmethod
    def parse(cls, key: str) -> "OffsetRange":
        """Parse a key like ``0-9999``."""
        try:
            start_text, end_text = key.split("-")
            start, end = int(start_text), int(end_text)
        except ValueError:
            raise ConfigError(f"offset range key must look like '0-9999', got {key!r}") from None
        if start < 0 or end < start:
            raise ConfigError(f"offset range key must have 0 <= start <= end, got {key!r}")
        return cls(start, end)


def check_range_size(range_size: int) -> int:
    """Validate the partition size."""
    if not isinstance(range_size, int) or range_size < 1:
        raise ConfigError(f"range_size must be a positive integer, got {range_size!r}")
    return range_size


def check_offsets(min_offset: int, max_offset: int | None) -> None:
    """Validate fastdup's ``min_offset``/``max_offset`` (indexes ``min_offset <= i < max_offset``;
    ``max_offset`` None or negative processes to the end)."""
    if isinstance(min_offset, bool) or not isinstance(min_offset, int) or min_offset < 0:
        raise ConfigError(f"min_offset must be an integer >= 0, got {min_offset!r}")
    if max_offset is None or (isinstance(max_offset, int) and not isinstance(max_offset, bool) and max_offset < 0):
        return
    if isinstance(max_offset, bool) or not isinstance(max_offset, int):
        raise ConfigError(f"max_offset must be an integer (-1 or None: to the end), got {max_offset!r}")
    if max_offset <= min_offset:
        raise ConfigError(f"max_offset ({max_offset}) must be greater than min_offset ({min_offset}): the run "
                          "processes manifest indexes min_offset <= i < max_offset (max_offset -1: to the end)")


def offset_ranges(n_rows: int, range_size: int = DEFAULT_RANGE_SIZE) -> list[OffsetRange]:
    """The nominal ranges covering manifest indexes ``0 .. n_rows-1``."""
    check_range_size(range_size)
    return [OffsetRange(s, s + range_size - 1) for s in range(0, n_rows, range_size)]


def ranges_between(
    n_rows: int, range_size: int, min_offset: int = 0, max_offset: int | None = None
) -> list[OffsetRange]:
    """The ranges that intersect ``[min_offset, max_offset)`` (fastdup's offsets)."""
    stop = n_rows if max_offset is None or max_offset < 0 else min(max_offset, n_rows)
    return [r for r in offset_ranges(n_rows, range_size) if r.end >= min_offset and r.start < stop]
