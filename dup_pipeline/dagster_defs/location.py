"""The code location ``workspace.yaml`` loads: every configured dataset (``datasets.py``).

On load, each dataset's offset-range partitions are registered in the Dagster instance that
``DAGSTER_HOME`` names, so "Materialize all" can launch on a fresh instance before anything ran;
the built-in demo dataset is generated then if it is missing. A dataset whose input cannot be
listed yet is skipped with a warning (its sensor's first tick or its manifest registers them later).
"""

import logging
import os

import dagster as dg

from dup_pipeline.core.errors import DupPipelineError
from dup_pipeline.dagster_defs.automation import register_partitions
from dup_pipeline.dagster_defs.datasets import datasets_from_environment
from dup_pipeline.dagster_defs.definitions import build_definitions
from dup_pipeline.dagster_defs.resources import DatasetResource

log = logging.getLogger("dup_pipeline")


def register_all(instance: dg.DagsterInstance, datasets: dict[str, DatasetResource]) -> dict[str, list[str]]:
    """Register the partitions of every dataset whose input can be listed; return them by dataset."""
    registered = {}
    for name, dataset in datasets.items():
        try:
            registered[name] = register_partitions(instance, name, dataset)
        except (DupPipelineError, OSError) as exc:
            log.warning("%s: offset-range partitions not registered yet: %s", name, exc)
    return registered


datasets = datasets_from_environment()
defs = build_definitions(datasets)
if os.environ.get("DAGSTER_HOME"):  # `dagster dev` sets it (a temporary folder when the user did not)
    with dg.DagsterInstance.get() as _instance:
        register_all(_instance, datasets)
