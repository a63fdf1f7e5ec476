"""The ``dup-pipeline`` command line."""

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import polars as pl
from tqdm import tqdm

from dup_pipeline.core.clean import CLEAN_LIST, CLEAN_PARQUET, DROPPED_PARQUET, clean_list, write_clean_list
from dup_pipeline.core.config import SETTINGS_FIELDS, Settings
from dup_pipeline.core.sources.names import is_url
from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.errors import DupPipelineError, WorkDirError, exit_code
from dup_pipeline.core.memory import limit_malloc_arenas
from dup_pipeline.core.pipeline import (
    RUN_MODES,
    PipelineConfig,
    RunSummary,
    run_pipeline,
)
from dup_pipeline.core.progress import Advance, ProgressSink, silent_progress
from dup_pipeline.core.report.report import build_report
from dup_pipeline.core.stages import stored_settings
from dup_pipeline.core.workdir import WorkDir


@contextlib.contextmanager
def _bar(desc: str, total: int) -> Iterator[Advance]:
    with tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar.update


def _progress(quiet: bool) -> ProgressSink:
    return silent_progress if quiet else _bar


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """Turn the pipeline's errors into a one-line message and exit code (2 bad parameter, 1 otherwise)."""
    try:
        yield
    except DupPipelineError as exc:
        error = click.ClickException(str(exc))
        error.exit_code = exit_code(exc)
        raise error from None


def _run(config: PipelineConfig, quiet: bool, **kwargs) -> RunSummary:
    with _reported_errors():
        return run_pipeline(config, _progress(quiet), **kwargs)


def _print_summary(summary: RunSummary) -> None:
    for line in summary.lines():
        click.echo(line)
    click.echo(f"outputs: {summary.work_dir}")


def _settings_option(f: dataclasses.Field):
    """The click option of one :class:`Settings` field (name, default and help from the field)."""
    flag = "--" + f.name.replace("_", "-")
    meta = f.metadata
    if f.type is bool:
        decls = f"{flag}/--no-{flag[2:]}" if f.default else flag
        return click.option(decls, f.name, is_flag=True, default=f.default, show_default=f.default, help=meta["help"])
    if meta["choices"]:
        kind = click.Choice(meta["choices"])
    elif f.name == "labels":
        kind = click.Path(exists=True, dir_okay=False)
    else:
        kind = f.type if f.type in (int, float) else str
    decls = [meta["short"], flag] if meta["short"] else [flag]
    return click.option(*decls, f.name, default=f.default, show_default=f.default is not None, type=kind,
                        help=meta["help"])


def with_run_options(func):
    """Every :class:`Settings` field as an option, and ``--quiet``."""
    func = click.option("--quiet", is_flag=True, help="No progress bar.")(func)
    for f in reversed(SETTINGS_FIELDS):
        func = _settings_option(f)(func)
    return func


def _config(input_spec, work_dir, **options) -> PipelineConfig:
    with _reported_errors():
        return Settings(**options).pipeline_config(input_spec, str(work_dir))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dup-pipeline")
def main() -> None:
    """Find bad files, duplicates, outliers and image statistics in an image dataset."""
    limit_malloc_arenas()  # before any worker thread starts: freed buffers are not kept per thread


@main.command()
@click.argument("input_path", metavar="INPUT")
@click.argument("work_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--min-offset", default=0, show_default=True, type=click.IntRange(min=0),
              help="First manifest index to process (fastdup's min_offset).")
@click.option("--max-offset", default=-1, show_default=True, type=int,
              help="Stop before this manifest index; -1 processes to the end (fastdup's max_offset).")
@click.option("--run-mode", default=0, show_default=True, type=click.IntRange(0, 4),
              help="fastdup's run_mode: " + "; ".join(f"{k}: {v}" for k, v in RUN_MODES.items()))
@click.option("--test-input", default=None, type=click.Path(exists=True, path_type=Path),
              help="Run mode 3: new images to compare with the existing index in WORK_DIR.")
@click.option("--stats-only", is_flag=True, help="Only bad files and image statistics (no model, no similarity).")
@with_run_options
def run(input_path: str, work_dir: Path, min_offset: int, max_offset: int, run_mode: int, test_input: Path | None,
        stats_only: bool, **options) -> None:
    """Analyse INPUT (a folder, a .txt/.csv file listing image paths or URLs, or a bucket prefix or URL
    such as s3://bucket/prefix; shards and videos included) into WORK_DIR."""
    if not is_url(input_path) and not Path(input_path).exists():
        raise click.BadParameter(f"{str(input_path)!r} does not exist", param_hint="INPUT")
    quiet = options.pop("quiet")
    config = _config(input_path, work_dir, **options)
    _print_summary(_run(config, quiet, min_offset=min_offset, max_offset=None if max_offset < 0 else max_offset,
                        features=not stats_only, run_mode=run_mode, test_input=test_input))


@main.command()
@click.argument("root", default="demo", type=click.Path(path_type=Path, file_okay=False))
@click.option("--per-class", default=12, show_default=True, type=click.IntRange(min=8),
              help="Original images per class.")
@with_run_options
def demo(root: Path, per_class: int, **options) -> None:
    """Generate the demo dataset under ROOT and run the pipeline on it (outputs in ROOT/work)."""
    quiet = options.pop("quiet")
    dataset = generate_demo(root, per_class=per_class)
    click.echo(f"demo dataset: {dataset.images} (labels: {dataset.labels}, ground truth: {dataset.ground_truth_path})")
    if options["labels"] is None and not options["labels_from_folders"]:
        options["labels"] = str(dataset.labels)
    _print_summary(_run(_config(dataset.images, dataset.root / "work", **options), quiet, name="demo"))
    click.echo("the demo plants duplicates, outliers, dark/bright/blurred images, bad files, wrong labels and "
               f"train/test leakage on purpose: every one is listed in {dataset.ground_truth_path}")


@main.command()
@click.argument("work_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--save-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the pages (default WORK_DIR/report).")
@click.option("--num-images", default=20, show_default=True, type=click.IntRange(min=1),
              help="Rows per gallery.")
def report(work_dir: Path, save_dir: Path | None, num_images: int) -> None:
    """(Re)write the HTML report of WORK_DIR: every gallery and an index page."""
    work = WorkDir(work_dir)
    labels = pl.read_parquet(work.labels_parquet) if work.labels_parquet.exists() else None
    with _reported_errors(), work.locked():  # not while a run writes this work_dir
        last = stored_settings(work, "report")  # the run's dataset name and cut-offs for the histogram
        report = build_report(work, save_dir, labels=labels, num_images=num_images, cutoffs=last.get("cutoffs"),
                              dataset_name=last.get("name"))
        click.echo(f"report: {report.index_path}")


@main.command()
@click.argument("work_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only print what would be dropped and why; write nothing.")
@click.option("--exclude-outliers", is_flag=True, help="Also drop outliers.")
@click.option("--exclude-wrong-labels", is_flag=True, help="Also drop images whose label is likely wrong.")
def clean(work_dir: Path, dry_run: bool, exclude_outliers: bool, exclude_wrong_labels: bool) -> None:
    """The files of an analysed WORK_DIR to keep for training: bad files, all but one image of each
    duplicate group (and optionally outliers and wrong labels) dropped, each with its reason."""
    work = WorkDir(work_dir)
    with _reported_errors(), work.locked():
        if not work.bad_files_parquet.exists():
            raise WorkDirError(f"{work_dir} has no analysis yet ({work.bad_files_parquet} not found): "
                               "run `dup-pipeline run INPUT WORK_DIR` first")
        make = clean_list if dry_run else write_clean_list
        result = make(work, exclude_outliers, exclude_wrong_labels)
    for row in result.dropped.iter_rows(named=True):
        click.echo(f"drop {row['filename']}: {row['reason']}")
    reasons = ", ".join(f"{k} {v}" for k, v in result.reasons().items())
    click.echo(f"keep {result.keep.height} files, drop {result.dropped.height}" + (f" ({reasons})" if reasons else ""))
    if not dry_run:
        click.echo(f"clean list: {work.root / CLEAN_LIST} and {work.root / CLEAN_PARQUET} "
                   f"(dropped, with reasons: {work.root / DROPPED_PARQUET})")


@main.command("make-demo")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False))
@click.option("--per-class", default=12, show_default=True, type=click.IntRange(min=8))
def make_demo(root: Path, per_class: int) -> None:
    """Only generate the demo dataset under ROOT."""
    dataset = generate_demo(root, per_class=per_class)
    click.echo(f"demo dataset: {dataset.images}")
