"""The ``dup-pipeline`` command line."""

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from tqdm import tqdm

from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.inputs import InputError
from dup_pipeline.core.pipeline import PipelineConfig, RunSummary, run_pipeline
from dup_pipeline.core.progress import Advance, ProgressSink, silent_progress
from dup_pipeline.core.ranges import DEFAULT_RANGE_SIZE
from dup_pipeline.core.scan import DecodeSettings
from dup_pipeline.core.decode import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from dup_pipeline.core.workdir import WorkDirError


@contextlib.contextmanager
def _bar(desc: str, total: int) -> Iterator[Advance]:
    with tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar.update


def _progress(quiet: bool) -> ProgressSink:
    return silent_progress if quiet else _bar


def _run(config: PipelineConfig, quiet: bool, min_offset: int = 0, max_offset: int | None = None) -> RunSummary:
    try:
        return run_pipeline(config, _progress(quiet), min_offset, max_offset)
    except (InputError, WorkDirError) as exc:
        raise click.ClickException(str(exc)) from None


def _print_summary(summary: RunSummary) -> None:
    for line in summary.lines():
        click.echo(line)
    click.echo(f"outputs: {summary.work_dir}")


run_options = [
    click.option("--range-size", default=DEFAULT_RANGE_SIZE, show_default=True, type=click.IntRange(min=1),
                 help="Images per offset-range partition."),
    click.option("--num-threads", default=-1, show_default=True, type=int,
                 help="Decoding threads; -1 uses every core."),
    click.option("--min-side", default=DEFAULT_MIN_SIDE, show_default=True, type=click.IntRange(min=1),
                 help="Images with a shorter side below this are bad (too_small)."),
    click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(min=1),
                 help="Images with more pixels are bad (too_large, decompression-bomb guard)."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def with_run_options(func):
    for option in reversed(run_options):
        func = option(func)
    return func


def _config(input_spec, work_dir, range_size, num_threads, min_side, max_pixels) -> PipelineConfig:
    try:
        return PipelineConfig(
            input=input_spec, work_dir=str(work_dir), range_size=range_size, num_threads=num_threads,
            decode=DecodeSettings(max_pixels=max_pixels, min_side=min_side),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dup-pipeline")
def main() -> None:
    """Find bad files, duplicates, outliers and image statistics in an image dataset."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("work_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--min-offset", default=0, show_default=True, type=click.IntRange(min=0),
              help="First manifest index to process (fastdup's min_offset).")
@click.option("--max-offset", default=-1, show_default=True, type=int,
              help="Stop before this manifest index; -1 processes to the end (fastdup's max_offset).")
@with_run_options
def run(input_path: Path, work_dir: Path, min_offset: int, max_offset: int, **options) -> None:
    """Analyse INPUT (a folder, or a .txt/.csv file listing image paths) into WORK_DIR."""
    if not input_path.exists():
        raise click.BadParameter(f"{str(input_path)!r} does not exist", param_hint="INPUT")
    quiet = options.pop("quiet")
    config = _config(input_path, work_dir, **options)
    _print_summary(_run(config, quiet, min_offset, None if max_offset < 0 else max_offset))


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
    _print_summary(_run(_config(dataset.images, dataset.root / "work", **options), quiet))


@main.command("make-demo")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False))
@click.option("--per-class", default=12, show_default=True, type=click.IntRange(min=8))
def make_demo(root: Path, per_class: int) -> None:
    """Only generate the demo dataset under ROOT."""
    dataset = generate_demo(root, per_class=per_class)
    click.echo(f"demo dataset: {dataset.images}")
