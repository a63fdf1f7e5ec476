"""Where inputs come from: local files, objects behind fsspec URLs, shard members, video frames.

The rest of the pipeline sees entries (:class:`Entry`: a stable name, a size, a change stamp)
and reads their content with :func:`iter_payloads`.
"""

from dup_pipeline.core.sources.catalog import (
    Entry,
    Payload,
    SourceSettings,
    content_hashes,
    expand,
    is_media,
    iter_payloads,
    list_prefix,
    stat_files,
)
from dup_pipeline.core.sources.names import is_url, locate

__all__ = [
    "Entry",
    "Payload",
    "SourceSettings",
    "content_hashes",
    "expand",
    "is_media",
    "is_url",
    "iter_payloads",
    "list_prefix",
    "locate",
    "stat_files",
]
