"""Where inputs come from: local files, objects behind fsspec URLs, shard members, video frames.

The rest of the pipeline sees entries (:class:`catalog.Entry`: a stable name, a size, a change
stamp) from :func:`catalog.discover` and reads their content with :func:`catalog.iter_payloads`
(decoded by :func:`reading.decode_payload`). Names: :mod:`names`; stores: :mod:`remote`;
shards: :mod:`archives`; videos: :mod:`video`.
"""
