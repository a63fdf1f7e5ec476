"""Which datasets the code location audits: a YAML file, environment variables, or the demo.

``DUP_PIPELINE_DATASETS`` may name a YAML file::

    datasets:
      flowers:
        input_dir: /data/flowers
        work_dir: /data/flowers_work
        range_size: 10000

Otherwise one dataset named ``DUP_PIPELINE_DATASET`` (default ``demo``) reads
``DUP_PIPELINE_INPUT_DIR`` and ``DUP_PIPELINE_WORK_DIR``; without them it audits the built-in
demo dataset under ``./demo`` (generated on first use).
"""

import os
import re
from pathlib import Path

import yaml

from dup_pipeline.core.errors import ConfigError
from dup_pipeline.dagster_defs.resources import DatasetResource

# the demo plants near-duplicates, four wrong labels and train/test copies: these checks fail on purpose
DEMO_EXPECTED_FAILURES = ("duplicate_fraction", "label_error_rate", "leakage_pairs")
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"dataset name {name!r} must match {NAME_PATTERN.pattern} (letters, digits, underscores)")
    return name


def datasets_from_environment(env: dict[str, str] | None = None) -> dict[str, DatasetResource]:
    """The configured datasets, by name."""
    env = dict(os.environ if env is None else env)
    if env.get("DUP_PIPELINE_DATASETS"):
        path = Path(env["DUP_PIPELINE_DATASETS"])
        spec = yaml.safe_load(path.read_text()) or {}
        entries = spec.get("datasets")
        if not isinstance(entries, dict) or not entries:
            raise ConfigError(f"{path}: expected a 'datasets:' mapping of name -> settings")
        return {_check_name(name): DatasetResource(**settings) for name, settings in entries.items()}
    name = _check_name(env.get("DUP_PIPELINE_DATASET", "demo"))
    if env.get("DUP_PIPELINE_INPUT_DIR"):
        return {
            name: DatasetResource(
                input_dir=env["DUP_PIPELINE_INPUT_DIR"],
                work_dir=env.get("DUP_PIPELINE_WORK_DIR", str(Path(env["DUP_PIPELINE_INPUT_DIR"]).parent / "work")),
            )
        }
    root = Path(env.get("DUP_PIPELINE_DEMO_DIR", "demo")).absolute()
    return {
        name: DatasetResource(
            input_dir=str(root / "images"), work_dir=str(root / "work"), labels=str(root / "labels.csv"),
            generate_demo_if_missing=True, expected_failures=list(DEMO_EXPECTED_FAILURES),
        )
    }
