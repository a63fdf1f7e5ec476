"""The dataset-level assets, generated from the core's stage registry (``core/stages.py``).

Each asset runs its stage (``run_stage``: computed, or reused when its fingerprint is unchanged)
and records the stage's summary as metadata: counts and fractions (numbers, so that the asset's
Plots tab shows the trend across audits), a preview table, the paths written and ``reused``. The
fingerprint is the materialization's data version. A manual "Materialize" and an audit run the
same assets, so both record the same metadata.
"""

from dataclasses import replace

import dagster as dg

from dup_pipeline.core.stages import BY_NAME, STAGES, Stage, run_stage
from dup_pipeline.dagster_defs.locking import holding_work_dir
from dup_pipeline.dagster_defs.metadata import materialize_results
from dup_pipeline.dagster_defs.resources import DatasetResource
from dup_pipeline.dagster_defs.scan_assets import OWNERS, resource_key, stage_context

RANGE_ASSETS = {"ranges:scan": ("bad_files", "image_stats"), "ranges:features": ("features",)}


def _deps(dataset: str, stage: Stage, available: set[str]) -> list[dg.AssetKey]:
    """Asset keys of what the stage reads (upstream stages' outputs, range assets for ``ranges:*``)."""
    keys = []
    for dep in stage.deps:
        names = RANGE_ASSETS.get(dep) or BY_NAME[dep].outputs
        keys += [dg.AssetKey([dataset, n]) for n in names if n in available or dep in RANGE_ASSETS]
    return keys


def _stage_asset(dataset: str, stage: Stage, available: set[str]) -> dg.AssetsDefinition:
    key = resource_key(dataset)
    deps = _deps(dataset, stage, available)
    if len(stage.outputs) == 1:
        @dg.asset(key=[dataset, stage.name], deps=deps, group_name=dataset, owners=OWNERS, kinds=set(stage.kinds),
                  required_resource_keys={key}, description=stage.description)
        @holding_work_dir(dataset)
        def one(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
            (result,) = materialize_results(run_stage(stage, stage_context(context, dataset)), keyed=False)
            return result

        return one

    @dg.multi_asset(name=f"{dataset}_{stage.name}", required_resource_keys={key}, specs=[
        dg.AssetSpec([dataset, name], deps=deps, group_name=dataset, owners=OWNERS, kinds=set(stage.kinds),
                     description=stage.description) for name in stage.outputs])
    @holding_work_dir(dataset)
    def several(context: dg.AssetExecutionContext):
        results = run_stage(stage, stage_context(context, dataset))
        yield from materialize_results([replace(r, asset=f"{dataset}/{r.asset}") for r in results], keyed=True)

    return several


def build_stage_assets(dataset: str, settings: DatasetResource) -> list[dg.AssetsDefinition]:
    """An asset per stage of the registry that applies to the dataset (label stages only with labels);
    the manifest and range assets are in ``scan_assets``."""
    config_labels = settings.has_labels
    stages = [s for s in STAGES if s.name != "file_manifest" and (config_labels or not s.needs_labels)]
    available = {"file_manifest"} | {name for s in stages for name in s.outputs}
    return [_stage_asset(dataset, s, available) for s in stages]
