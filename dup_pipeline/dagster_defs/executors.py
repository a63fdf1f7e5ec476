"""Which Dagster executor runs the jobs: ``DUP_PIPELINE_EXECUTOR`` = multiprocess (default),
in_process, or dask (dagster-dask: a local Dask cluster, or a scheduler address in
``DUP_PIPELINE_DASK_SCHEDULER`` to spread range steps over several machines)."""

import os

import dagster as dg

EXECUTORS = ("multiprocess", "in_process", "dask")


def executor_from_environment(env: dict[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor named by the environment (a clear error naming the allowed values)."""
    env = dict(os.environ if env is None else env)
    name = env.get("DUP_PIPELINE_EXECUTOR", "multiprocess")
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "dask":
        from dagster_dask import dask_executor

        scheduler = env.get("DUP_PIPELINE_DASK_SCHEDULER")
        cluster = {"existing": {"address": scheduler}} if scheduler else {"local": {"n_workers": 2, "threads_per_worker": 1}}
        return dask_executor.configured({"cluster": cluster})
    raise ValueError(f"DUP_PIPELINE_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {name!r}")
