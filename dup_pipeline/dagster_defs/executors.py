"""Which Dagster executor runs the jobs: ``DUP_PIPELINE_EXECUTOR`` = in_process (default: one
machine, no process start per step), multiprocess, or dask (dagster-dask: a local Dask cluster of ``DUP_PIPELINE_DASK_WORKERS`` worker
processes, default 2, or a scheduler address in ``DUP_PIPELINE_DASK_SCHEDULER`` to spread range
steps over several machines; those need the same code, input and work_dir paths and DAGSTER_HOME).

dagster-dask's own executor submits the whole plan once, up front, so it never runs the steps of a
dynamic fan-out (dagster-io/dagster#9785): the audit job's range steps and everything after them
were silently left out while the run reported success. The dask executor here takes the same
configuration but submits each step once it is ready, as the multiprocess executor does, so range
steps appear as soon as the manifest step has listed the stale ranges.
"""

import functools
import os
import sys
import time
from collections.abc import Iterator

import dagster as dg

from dup_pipeline.core.errors import ConfigError

EXECUTORS = ("in_process", "multiprocess", "dask")
DEFAULT_DASK_WORKERS = 2


def executor_from_environment(env: dict[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor named by the environment (a clear error naming the allowed values)."""
    env = dict(os.environ if env is None else env)
    name = env.get("DUP_PIPELINE_EXECUTOR", "in_process")
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "dask":
        scheduler = env.get("DUP_PIPELINE_DASK_SCHEDULER")
        workers = int(env.get("DUP_PIPELINE_DASK_WORKERS", DEFAULT_DASK_WORKERS))
        cluster = {"existing": {"address": scheduler}} if scheduler else {"local": {"n_workers": workers,
                                                                                    "threads_per_worker": 1}}
        return dask_executor().configured({"cluster": cluster})
    raise ConfigError(f"DUP_PIPELINE_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {name!r}")


@functools.cache
def dask_executor() -> dg.ExecutorDefinition:
    """dagster-dask's executor (same configuration) that also runs dynamically mapped steps."""
    try:
        from dagster_dask import dask_executor as library_executor
        from dagster_dask.executor import DaskExecutor
    except ImportError as exc:
        raise ImportError("DUP_PIPELINE_EXECUTOR=dask needs dagster-dask: "
                          "pip install dagster-dask==0.29.27") from exc

    class StepwiseDaskExecutor(DaskExecutor):
        def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
            yield from _execute_stepwise(self, plan_context, execution_plan)

    @dg.executor(name="dask", config_schema=library_executor.config_schema,
                 requirements=dg.multiple_process_executor_requirements())
    def stepwise_dask_executor(init_context):
        ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
        return StepwiseDaskExecutor(cluster_type, cluster_configuration)

    return stepwise_dask_executor


def _execute_stepwise(executor, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
    """Submit each step to Dask when its inputs are ready (dynamic mappings included)."""
    import contextlib

    import dask.distributed
    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._core.events import EngineEventData
    from dagster._core.execution.plan.active import ActiveExecution
    from dagster._utils.error import serializable_error_info_from_exc_info
    from dagster_dask.executor import (
        get_dask_resource_requirements,
        query_on_dask_worker,
    )

    if not plan_context.instance.is_persistent:
        raise dg.DagsterInvariantViolationError("Dask execution requires a persistent DagsterInstance "
                                                "(set DAGSTER_HOME)")
    if executor.cluster_type not in ("local", "existing"):
        raise dg.DagsterInvariantViolationError(
            f"dask cluster type {executor.cluster_type!r} is not supported here: use 'local' or 'existing'")
    job_name, run_id = plan_context.job_name, plan_context.dagster_run.run_id
    instance_ref = plan_context.instance.get_ref()
    yield dg.DagsterEvent.engine_event(
        plan_context, f"Executing steps on a {executor.cluster_type} Dask cluster", EngineEventData())
    with contextlib.ExitStack() as stack:
        if executor.cluster_type == "local":
            cluster = stack.enter_context(dask.distributed.LocalCluster(**executor.build_dict(job_name)))
        else:
            cluster = executor.cluster_configuration["address"]
        client = stack.enter_context(dask.distributed.Client(cluster))
        active = stack.enter_context(ActiveExecution(execution_plan, retry_mode=executor.retries))
        running: dict = {}
        while not active.is_complete:
            if active.check_for_interrupts():
                client.cancel(list(running))
                active.mark_interrupted()
                yield dg.DagsterEvent.engine_event(
                    plan_context, f"Dask executor: interrupted; cancelled steps {sorted(running.values())}",
                    EngineEventData())
                raise DagsterExecutionInterruptedError()
            for step in active.get_steps_to_execute():
                # arguments bound in a partial: Dask walks submit()'s own arguments, and a partitioned
                # run's DagsterRun holds records (partition subsets) that refuse iteration
                task = functools.partial(query_on_dask_worker, [], plan_context.reconstructable_job,
                                         plan_context.dagster_run, plan_context.run_config, [step.key],
                                         instance_ref, active.get_known_state())
                future = client.submit(
                    task, key=f"{job_name}.{run_id}.{step.key}",  # unique per run on a shared scheduler
                    resources=get_dask_resource_requirements(step.tags), pure=False,
                )
                running[future] = step.key
            finished = [f for f in running if f.done()]
            for future in finished:
                step_key = running.pop(future)
                try:
                    events = future.result()
                except Exception:  # noqa: BLE001 - any failure of the Dask task fails the step
                    error = serializable_error_info_from_exc_info(sys.exc_info())
                    step_context = plan_context.for_step(active.get_step_by_key(step_key))
                    yield dg.DagsterEvent.engine_event(step_context, f"Dask task of step {step_key} failed",
                                                       EngineEventData.engine_error(error))
                    events = [executor.log_failure_or_retry_event_after_error(step_context, error,
                                                                              active.get_known_state())]
                for event in events:
                    yield event
                    active.handle_event(event)
                active.verify_complete(plan_context, step_key)
            yield from active.plan_events_iterator(plan_context)
            if running and not finished:
                time.sleep(0.05)
