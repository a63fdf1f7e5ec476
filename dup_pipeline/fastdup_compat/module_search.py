"""fastdup's module-level search: ``fastdup.init_search(k, work_dir)`` once, then ``fastdup.search(file)``."""

import os
from typing import Any

import numpy as np
import pandas as pd

from dup_pipeline.core.errors import ConfigError
from dup_pipeline.fastdup_compat.controller import Fastdup

_active: list[Fastdup] = []  # the work_dir init_search prepared (fastdup keeps one search state per process)


def init_search(k: int, work_dir: str | os.PathLike[str], d: int | None = None, model_path: str | None = None,
                verbose: bool = False, license: str = "", **_: Any) -> int:
    """Load ``work_dir``'s index and model (the run's default model unless ``model_path``); 0 on success."""
    fd = Fastdup(work_dir)
    fd.init_search(k, model_path=model_path)
    width = fd._searcher.settings.embedder.spec.dim
    if d is not None and d != width:
        raise ConfigError(f"d={d} does not match the model's embedding width {width}")
    _active[:] = [fd]
    print("init_search() initialized OK.")
    return 0


def _searcher() -> Fastdup:
    if not _active:
        raise ConfigError("call fastdup.init_search(k, work_dir) before search()")
    return _active[0]


def search(filename: str | os.PathLike[str], img: Any = None, verbose: bool = False) -> pd.DataFrame:
    """``from, to, distance, index``: the k indexed images most similar to the query image."""
    return _searcher().search(filename, img)


def vector_search(filename: str = "query_vector", vec: np.ndarray | None = None, verbose: bool = False,
                  ) -> pd.DataFrame:
    """Like :func:`search` for a feature vector."""
    return _searcher().vector_search(filename, vec)
