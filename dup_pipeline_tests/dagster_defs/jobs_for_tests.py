"""Module-level job factories for ``dg.reconstructable`` (subprocess, multiprocess and Dask runs).

Every process that executes a step (the run worker, each multiprocess child, each Dask worker)
imports this module and calls :func:`audit_job`, so the job is rebuilt from the environment the
same way the code location builds it: ``DUP_PIPELINE_DATASETS`` (a YAML file) or
``DUP_PIPELINE_INPUT_DIR`` / ``DUP_PIPELINE_WORK_DIR``, and ``DUP_PIPELINE_EXECUTOR``.
"""

import os

import dagster as dg

from dup_pipeline.dagster_defs.automation import audit_request, register_partitions
from dup_pipeline.dagster_defs.datasets import datasets_from_environment
from dup_pipeline.dagster_defs.definitions import build_definitions


def _dataset() -> tuple[str, object]:
    datasets = datasets_from_environment()
    name = os.environ.get("DUP_PIPELINE_DATASET") or next(iter(datasets))
    return name, datasets


def audit_job() -> dg.JobDefinition:
    """The ``<dataset>_audit_job`` of the one dataset configured by the environment."""
    name, datasets = _dataset()
    return build_definitions(datasets).resolve_job_def(f"{name}_audit_job")


def audit_tags(instance: dg.DagsterInstance) -> dict[str, str]:
    """The tags the schedule gives that dataset's audit run (its partitions registered first)."""
    name, datasets = _dataset()
    return audit_request(name, register_partitions(instance, name, datasets[name])).tags
