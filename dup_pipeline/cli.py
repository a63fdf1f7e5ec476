"""The ``dup-pipeline`` command line."""

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import polars as pl
from tqdm import tqdm

from dup_pipeline.core.decode import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from dup_pipeline.core.demo import generate_demo
from dup_pipeline.core.errors import DupPipelineError, exit_code
from dup_pipeline.core.pipeline import (
    RUN_MODES,
    ModelConfig,
    PipelineConfig,
    RunSummary,
    run_pipeline,
)
from dup_pipeline.core.progress import Advance, ProgressSink, silent_progress
from dup_pipeline.core.ranges import DEFAULT_RANGE_SIZE
from dup_pipeline.core.report.report import build_report
from dup_pipeline.core.scan import DecodeSettings
from dup_pipeline.core.similarity import GraphConfig
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


run_options = [
    click.option("--range-size", default=DEFAULT_RANGE_SIZE, show_default=True, type=click.IntRange(min=1),
                 help="Images per offset-range partition."),
    click.option("--num-threads", default=-1, show_default=True, type=int,
                 help="Decoding threads; -1 uses every core."),
    click.option("--min-side", default=DEFAULT_MIN_SIDE, show_default=True, type=click.IntRange(min=1),
                 help="Images with a shorter side below this are bad (too_small)."),
    click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(min=1),
                 help="Images with more pixels are bad (too_large, decompression-bomb guard)."),
    click.option("--model-path", default="efficientnet_lite0", show_default=True,
                 help="efficientnet_lite0, efficientnet_lite0_int8 (about 2x faster, opt-in) or an ONNX model file."),
    click.option("--model-output", default=None, help="Output of --model-path that is the embedding."),
    click.option("--normalization", default=None,
                 help="Input normalization of an ONNX --model-path: imagenet (default), efficientnet, unit, "
                      "symmetric, raw or 'mean=R,G,B;std=R,G,B'."),
    click.option("--bounding-box", default=None, help="Crop before embedding: 'row_y=,col_x=,height=,width='."),
    click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1)),
    click.option("--threshold", default=0.9, show_default=True, type=float,
                 help="Pairs at or above this similarity are listed in similarity.csv."),
    click.option("--ccthreshold", default=0.9, show_default=True, type=float,
                 help="Edges at or above this similarity join connected components."),
    click.option("--lower-threshold", default=0.05, show_default=True, type=float,
                 help="Fraction of images with the weakest nearest neighbour reported as outliers."),
    click.option("-k", "--nearest-neighbors-k", default=10, show_default=True, type=click.IntRange(min=1),
                 help="Neighbours searched per image."),
    click.option("--faiss-mode", default="HNSW32", show_default=True, help="faiss.index_factory string."),
    click.option("--faiss-param", default="",
                 help="faiss search parameters, e.g. 'efSearch=128' (default efSearch=64 for HNSW, nprobe=16 for IVF)."),
    click.option("--distance", default="cosine", show_default=True,
                 type=click.Choice(["cosine", "euclidean", "squared_euclidean", "manhattan"])),
    click.option("--labels", "labels", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="CSV with filename,label[,split] (file names relative to INPUT or absolute): "
                      "finds wrong labels and train/test leakage."),
    click.option("--labels-from-folders", is_flag=True,
                 help="Take labels from folder names (train/cat/x.jpg: label cat, split train)."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def with_run_options(func):
    for option in reversed(run_options):
        func = option(func)
    return func


def _config(input_spec, work_dir, range_size, num_threads, min_side, max_pixels, model_path, model_output,
            normalization, bounding_box, batch_size, threshold, ccthreshold, lower_threshold, nearest_neighbors_k,
            faiss_mode, faiss_param, distance, labels, labels_from_folders) -> PipelineConfig:
    with _reported_errors():
        return PipelineConfig(
            input=input_spec, work_dir=str(work_dir), range_size=range_size, num_threads=num_threads,
            decode=DecodeSettings(max_pixels=max_pixels, min_side=min_side),
            model=ModelConfig(model_path=model_path, output_name=model_output, normalization=normalization,
                              bounding_box=bounding_box, batch_size=batch_size),
            graph=GraphConfig(faiss_mode=faiss_mode, faiss_param=faiss_param, distance=distance,
                              nearest_neighbors_k=nearest_neighbors_k, threshold=threshold,
                              ccthreshold=ccthreshold, lower_threshold=lower_threshold),
            labels=labels, labels_from_folders=labels_from_folders,
        )


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
@click.option("--run-mode", default=0, show_default=True, type=click.IntRange(0, 4),
              help="fastdup's run_mode: " + "; ".join(f"{k}: {v}" for k, v in RUN_MODES.items()))
@click.option("--test-input", default=None, type=click.Path(exists=True, path_type=Path),
              help="Run mode 3: new images to compare with the existing index in WORK_DIR.")
@click.option("--stats-only", is_flag=True, help="Only bad files and image statistics (no model, no similarity).")
@with_run_options
def run(input_path: Path, work_dir: Path, min_offset: int, max_offset: int, run_mode: int, test_input: Path | None,
        stats_only: bool, **options) -> None:
    """Analyse INPUT (a folder, or a .txt/.csv file listing image paths) into WORK_DIR."""
    if not input_path.exists():
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
        options["labels"] = dataset.labels
    _print_summary(_run(_config(dataset.images, dataset.root / "work", **options), quiet))


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
    click.echo(f"report: {build_report(work, save_dir, labels=labels, num_images=num_images).index_path}")


@main.command("make-demo")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False))
@click.option("--per-class", default=12, show_default=True, type=click.IntRange(min=8))
def make_demo(root: Path, per_class: int) -> None:
    """Only generate the demo dataset under ROOT."""
    dataset = generate_demo(root, per_class=per_class)
    click.echo(f"demo dataset: {dataset.images}")
