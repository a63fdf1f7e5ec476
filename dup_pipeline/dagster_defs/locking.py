"""Dagster steps hold their dataset's work_dir lock (the same lock as the CLI and ``fd.run``).

A step waits (and logs who holds the lock) instead of failing: steps of one run on the
multiprocess executor queue for it, offset-range steps share it and run side by side, and a step
started while a command-line run writes the work_dir goes on once that run ends. The lock is
re-entrant per process, so the steps of an in-process run never wait for each other.
"""

import functools
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import dagster as dg

from dup_pipeline.core.workdir import WorkDir


def _lock(context: Any, dataset: str, shared: bool) -> AbstractContextManager[WorkDir]:
    from dup_pipeline.dagster_defs.scan_assets import dataset_resource  # scan_assets uses this module

    return dataset_resource(context, dataset).workdir().locked(shared=shared, wait=None, on_wait=context.log.info)


def holding_work_dir(dataset: str, shared: bool = False) -> Callable[[Callable], Callable]:
    """Decorate the compute function of an asset or op of ``dataset`` (under ``@dg.asset``/``@dg.op``):
    it runs holding the work_dir lock, exclusive or (``shared=True``, for one offset range) shared."""

    def decorate(compute: Callable) -> Callable:
        if inspect.isgeneratorfunction(compute):
            @functools.wraps(compute)
            def step(context: dg.OpExecutionContext, *args: Any, **kwargs: Any) -> Any:
                with _lock(context, dataset, shared):
                    yield from compute(context, *args, **kwargs)
        else:
            @functools.wraps(compute)
            def step(context: dg.OpExecutionContext, *args: Any, **kwargs: Any) -> Any:
                with _lock(context, dataset, shared):
                    return compute(context, *args, **kwargs)
        return step

    return decorate
