"""Scan one offset range of the manifest into work_dir, reusing what an earlier run computed.

Two products per range, each with its own record of which manifest rows it was computed from:
``scan`` (bad files and image statistics) and ``features`` (embeddings). A rerun decodes only
the rows that are new or changed for a product; every file is decoded at most once per run.

A product's files are written under content-addressed names (``features.vectors.<digest>.npy``,
``features.index.<digest>.parquet``, ``features.rows.<digest>.parquet``; ``scan.bad.…``,
``scan.stats.…``, ``scan.rows.…``), then its commit marker ``<product>.json`` names them and the
digest of the manifest indexes of each table. Readers take only the files the marker names and
check those indexes, so a run killed at any point leaves either the old or the new product,
never a mix; files no marker names are deleted.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

from dup_pipeline.core.atomic import (
    remove_temp_files,
    write_content_addressed,
    write_json,
)
from dup_pipeline.core.decode import DecodedImage
from dup_pipeline.core.embed.crop import CropBox
from dup_pipeline.core.embed.model import Embedder, ModelSpec
from dup_pipeline.core.progress import Advance
from dup_pipeline.core.ranges import OffsetRange
from dup_pipeline.core.scan import (
    BAD_SCHEMA,
    STATS_SCHEMA,
    DecodeSettings,
    ScanResult,
    bad_row,
    process_rows,
)
from dup_pipeline.core.threads import default_threads
from dup_pipeline.core.sources.catalog import SourceSettings
from dup_pipeline.core.workdir import WorkDir, holding_range_lock

SCAN_VERSION = "4"
FEATURES_VERSION = "4"  # 4: centre-crop preprocessing (ModelSpec.preprocess)
PRODUCTS = ("scan", "features")
T = TypeVar("T")
ROW_KEY = ("index", "path", "size", "mtime_ns", "content_hash", "missing")
FEATURE_INDEX_SCHEMA = {"index": pl.Int64, "top_class": pl.Int64, "top_score": pl.Float32}


@dataclass(frozen=True)
class FeatureSettings:
    """The model that embeds images, an optional fixed crop, and the inference batch size."""

    embedder: Embedder
    crop: CropBox | None
    batch_size: int  # from ModelConfig, where its default is stated

    def prepare(self, decoded: DecodedImage) -> np.ndarray | None:
        """The model input, or None when the crop box lies outside the image (a bad file)."""
        image = self.crop.apply(decoded) if self.crop else decoded.image
        return None if image is None else self.embedder.prepare(image)

    def tag(self, settings: DecodeSettings) -> str:
        return features_tag(self.embedder.spec, self.crop, settings)


def features_tag(spec: ModelSpec, crop: CropBox | None, settings: DecodeSettings) -> str:
    """What the embeddings of a range depend on besides its files: model, crop and decoding."""
    return json.dumps({"version": FEATURES_VERSION, "model": spec.model_id, "crop": _crop_fields(crop),
                       "decode": asdict(settings)}, sort_keys=True)


def _crop_fields(crop: CropBox | None) -> dict | None:
    return asdict(crop) if crop else None


@dataclass(frozen=True)
class RangeScanOutcome:
    """What scanning a range did: rows decoded now (byte-identical copies of a row decoded now
    included), rows reused, bad, good and embedded counts (``copied``: embeddings among
    ``embedded`` copied from a byte-identical file, not computed)."""

    key: str
    rows: int
    decoded: int
    reused: int
    bad: int
    good: int
    embedded: int = 0
    copied: int = 0


@dataclass(frozen=True)
class RangeFeatures:
    """A range's embeddings: row ``i`` of ``vectors`` belongs to manifest index ``index[i]``."""

    index: pl.DataFrame
    vectors: np.ndarray


def range_rows(manifest: pl.DataFrame, offset_range: OffsetRange) -> pl.DataFrame:
    """The manifest rows whose index falls in ``offset_range``."""
    return manifest.filter(pl.col("index").is_between(offset_range.start, offset_range.end)).sort("index")


def _scan_tag(settings: DecodeSettings, crop: dict | None) -> str:
    """What the scan depends on: decoding limits, and the crop box (an image it misses is bad)."""
    return json.dumps({"version": SCAN_VERSION, **asdict(settings), "crop": crop}, sort_keys=True)


def rows_fingerprint(rows: pl.DataFrame, tag: str) -> str:
    """A hash of the rows' identity (path, size, mtime, content) and the settings used."""
    digest = hashlib.blake2b(tag.encode(), digest_size=16)
    digest.update(rows.select(ROW_KEY).write_csv().encode())
    return digest.hexdigest()


def _indexes_digest(table: pl.DataFrame) -> str:
    """Identifies the manifest indexes of a table's rows, in order."""
    return hashlib.blake2b(table["index"].to_numpy().astype("<i8").tobytes(), digest_size=16).hexdigest()


def _read_marker(folder: Path, product: str) -> dict | None:
    """The product's marker as written (None when absent, unreadable or of the old layout)."""
    try:
        state = json.loads((folder / f"{product}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not all(isinstance(state.get(k), dict) for k in ("files", "indexes")):
        return None
    return state


def _marker(folder: Path, product: str) -> dict | None:
    """The product's commit marker, when every file it names is there."""
    state = _read_marker(folder, product)
    if state is None or not all((folder / name).is_file() for name in state["files"].values()):
        return None
    return state


def _read_table(folder: Path, state: dict, role: str) -> pl.DataFrame | None:
    """A table the marker names, when it holds the manifest indexes the marker recorded for it."""
    try:
        table = pl.read_parquet(folder / state["files"][role])
    except (OSError, KeyError, pl.exceptions.PolarsError):
        return None
    return table if _indexes_digest(table) == state["indexes"].get(role) else None


def _write_npy(vectors: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            np.save(handle, vectors)
    return write


def _commit(folder: Path, product: str, rows: pl.DataFrame, tag: str, tables: dict[str, pl.DataFrame],
            vectors: np.ndarray | None = None) -> None:
    """Write a product's files under content-addressed names, then its marker naming them: the commit."""
    tables = {**tables, "rows": rows.select(ROW_KEY)}
    files = {role: write_content_addressed(folder, f"{product}.{role}", ".parquet", table.write_parquet).name
             for role, table in tables.items()}
    if vectors is not None:
        npy = write_content_addressed(folder, f"{product}.vectors", ".npy", _write_npy(vectors))
        files["vectors"] = npy.name
    indexes = {role: _indexes_digest(table) for role, table in tables.items()}
    write_json({"fingerprint": rows_fingerprint(rows, tag), "settings": tag, "rows": rows.height,
                "files": files, "indexes": indexes}, folder / f"{product}.json")
    _prune(folder)


def _prune(folder: Path) -> None:
    """Delete the range's files that no commit marker names: an older generation, or files a
    killed run wrote without committing them."""
    keep = {f"{product}.json" for product in PRODUCTS}
    for product in PRODUCTS:
        keep.update((_read_marker(folder, product) or {"files": {}})["files"].values())
    for path in folder.glob("*"):
        if path.name not in keep and path.is_file():
            path.unlink(missing_ok=True)


def _previous_rows(folder: Path, product: str, tag: str) -> pl.DataFrame | None:
    """The rows a product was last computed from, if computed with the same settings."""
    state = _marker(folder, product)
    return _read_table(folder, state, "rows") if state is not None and state.get("settings") == tag else None


def _state_current(folder: Path, product: str, rows: pl.DataFrame, tag: str) -> bool:
    """The product's commit marker names exactly these rows and settings."""
    state = _marker(folder, product)
    return state is not None and state.get("fingerprint") == rows_fingerprint(rows, tag)


def _unchanged(rows: pl.DataFrame, previous: pl.DataFrame | None) -> set[int]:
    """Indexes whose row is identical to the previous one (a missing file's null hash included)."""
    if previous is None:
        return set()
    joined = rows.select(ROW_KEY).join(previous, on=list(ROW_KEY), how="inner", nulls_equal=True)
    return set(joined["index"].to_list())


def is_range_current(work: WorkDir, manifest: pl.DataFrame, offset_range: OffsetRange,
                     settings: DecodeSettings = DecodeSettings(), feature_tag: str | None = None) -> bool:
    """True when the range's outputs were computed from exactly its current manifest rows and settings.

    Cheap (no decoding, no model run): audits use it to process only stale ranges. ``feature_tag``
    (see :func:`features_tag`) also requires current embeddings, and its crop box is part of the
    scan's settings. A product's ``.json`` marker is written last, so it is the commit marker:
    without it (or without a file it names) the product counts as not computed.
    """
    folder = work.range_dir(offset_range)
    rows = range_rows(manifest, offset_range)
    products = {"scan": _scan_tag(settings, json.loads(feature_tag)["crop"] if feature_tag else None)}
    if feature_tag is not None:
        products["features"] = feature_tag
    return all(_state_current(folder, product, rows, tag) for product, tag in products.items())


def _read_committed(folder: Path, product: str, read: Callable[[dict], T | None]) -> T | None:
    """``read(marker)`` of the product's committed files. When they cannot be read because a
    writer committed a newer generation meanwhile (and deleted these files), read that one."""
    state = _marker(folder, product)
    while state is not None:
        found = read(state)
        if found is not None:
            return found
        newer = _marker(folder, product)
        if newer == state:
            return None  # these files are damaged: the product counts as not computed
        state = newer
    return None


def _scan_files(folder: Path, state: dict) -> ScanResult | None:
    bad, stats = _read_table(folder, state, "bad"), _read_table(folder, state, "stats")
    return None if bad is None or stats is None else ScanResult(bad, stats)


def _read_scan(folder: Path) -> ScanResult | None:
    return _read_committed(folder, "scan", lambda state: _scan_files(folder, state))


def _empty_scan() -> ScanResult:
    return ScanResult(pl.DataFrame(schema=BAD_SCHEMA), pl.DataFrame(schema=STATS_SCHEMA))


def read_range_scan(work: WorkDir, offset_range: OffsetRange) -> ScanResult:
    """Read a range's bad files and statistics (empty frames when the range was never scanned)."""
    return _read_scan(work.range_dir(offset_range)) or _empty_scan()


def _feature_files(folder: Path, state: dict) -> RangeFeatures | None:
    index = _read_table(folder, state, "index")
    if index is None:
        return None
    try:
        vectors = np.load(folder / state["files"]["vectors"], mmap_mode="r")
    except (OSError, KeyError, ValueError):
        return None
    return RangeFeatures(index, vectors) if vectors.ndim == 2 and vectors.shape[0] == index.height else None


def read_range_features(work: WorkDir, offset_range: OffsetRange) -> RangeFeatures | None:
    """A range's embeddings (memory-mapped), or None when they were never computed."""
    folder = work.range_dir(offset_range)
    return _read_committed(folder, "features", lambda state: _feature_files(folder, state))


def range_features_source(work: WorkDir, offset_range: OffsetRange) -> str | None:
    """What identifies a range's committed embeddings without reading them: the content-addressed name of
    its vectors file and the digest of its manifest indexes (None when never embedded)."""
    state = _marker(work.range_dir(offset_range), "features")
    return None if state is None else f"{state['files']['vectors']}:{state['indexes']['index']}"


def range_files(work: WorkDir, offset_range: OffsetRange, product: str) -> dict[str, Path]:
    """The files of a range's committed ``scan`` (``bad``, ``stats``, ``rows``) or ``features``
    (``vectors``, ``index``, ``rows``) product; empty when it was never computed."""
    folder = work.range_dir(offset_range)
    state = _marker(folder, product)
    return {role: folder / name for role, name in state["files"].items()} if state is not None else {}


def _top_classes(logits: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    if logits is None:
        return np.full(n, -1, dtype=np.int64), np.full(n, np.nan, dtype=np.float32)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    top = probs.argmax(axis=1)
    return top.astype(np.int64), probs[np.arange(n), top].astype(np.float32)


class _FeatureBatcher:
    """Collects prepared images and runs the model a batch at a time, writing the vectors into one
    array of ``capacity`` rows (the rows to embed), so a range's vectors are held once, not in pieces
    that are then concatenated."""

    def __init__(self, features: FeatureSettings, capacity: int) -> None:
        self.features = features
        self.pending: list[tuple[int, np.ndarray, str]] = []
        self.indexes: list[int] = []
        self.matrix = np.empty((capacity, features.embedder.spec.dim), np.float32)
        self.top_class: list[np.ndarray] = []
        self.top_score: list[np.ndarray] = []
        self.copies: list[tuple[int, int]] = []  # (index, index of the byte-identical row embedded)
        self.borrowed: list[tuple[int, np.ndarray, int, float]] = []  # (index, vector, top class, score)

    def copy(self, index: int, source: int) -> None:
        """``index`` gets the embedding of ``source``, a file with the same bytes (no model run)."""
        self.copies.append((index, source))

    def borrow(self, index: int, embedded: tuple[np.ndarray, int, float]) -> None:
        """``index`` gets an embedding another range computed for the same bytes (no model run)."""
        self.borrowed.append((index, *embedded))

    def add(self, index: int, tensor: np.ndarray, path: str) -> None:
        self.pending.append((index, tensor, path))
        if len(self.pending) >= self.features.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        _, tensors, paths = zip(*self.pending)
        vectors, logits = self.features.embedder.run(list(tensors), list(paths))  # paths name a NaN vector
        top, score = _top_classes(logits, len(self.pending))
        self.matrix[len(self.indexes) : len(self.indexes) + len(vectors)] = vectors
        self.indexes.extend(i for i, *_ in self.pending)
        self.top_class.append(top)
        self.top_score.append(score)
        self.pending = []

    def result(self) -> RangeFeatures:
        """The vectors in the order embedded, then the copies (see :func:`_merge_features` for order)."""
        self.flush()
        index = pl.DataFrame(
            {"index": self.indexes,
             "top_class": np.concatenate(self.top_class) if self.top_class else np.empty(0, np.int64),
             "top_score": np.concatenate(self.top_score) if self.top_score else np.empty(0, np.float32)},
            schema=FEATURE_INDEX_SCHEMA,
        )
        n = len(self.indexes)
        if self.copies:
            position = {i: p for p, i in enumerate(self.indexes)}
            rows = [position[source] for _, source in self.copies]
            self.matrix[n : n + len(rows)] = self.matrix[rows]
            copied = index[rows].with_columns(index=pl.Series([i for i, _ in self.copies], dtype=pl.Int64))
            index, n = pl.concat([index, copied]), n + len(rows)
        if self.borrowed:
            indexes, vectors, top, score = zip(*self.borrowed)
            self.matrix[n : n + len(vectors)] = np.stack(vectors)
            borrowed = pl.DataFrame({"index": indexes, "top_class": top, "top_score": score},
                                    schema=FEATURE_INDEX_SCHEMA)
            index, n = pl.concat([index, borrowed]), n + len(vectors)
        return RangeFeatures(index, self.matrix[:n])


def _merge_features(old: RangeFeatures | None, keep: set[int], new: RangeFeatures) -> RangeFeatures:
    """The kept rows of ``old`` and the ``new`` rows in manifest order (copying ``new``'s vectors
    only when there is something to merge or reorder)."""
    index, vectors = new.index, new.vectors
    if old is not None and keep:
        mask = old.index["index"].is_in(list(keep)).to_numpy()
        kept = int(mask.sum())
        index = pl.concat([old.index.filter(pl.Series(mask)), new.index])
        vectors = np.empty((kept + len(new.vectors), new.vectors.shape[1]), np.float32)
        vectors[:kept] = old.vectors[mask]
        vectors[kept:] = new.vectors
    order = index["index"].to_numpy()
    if len(order) > 1 and not (np.diff(order) > 0).all():
        order = np.argsort(order, kind="stable")
        index, vectors = index[order], vectors[order]
    return RangeFeatures(index, np.ascontiguousarray(vectors))


def _embedded_elsewhere(work: WorkDir, manifest: pl.DataFrame, offset_range: OffsetRange, rows: pl.DataFrame,
                        wanted: set[int], tag: str) -> dict[int, tuple[np.ndarray, int, float]]:
    """Embeddings of ``wanted`` rows whose bytes (content hash) an earlier range has already embedded
    with the same settings (``tag``), read from that range's committed features; by manifest index."""
    hashes = rows.filter(pl.col("index").is_in(list(wanted)) & ~pl.col("missing")
                         & pl.col("content_hash").is_not_null())
    first = (manifest.filter((pl.col("index") < offset_range.start) & ~pl.col("missing")
                             & pl.col("content_hash").is_in(hashes["content_hash"].unique().to_list()))
             .group_by("content_hash").agg(pl.col("index").min()))
    size = offset_range.end - offset_range.start + 1  # ranges are nominal: every one has the same size
    found: dict[str, tuple[np.ndarray, int, float]] = {}
    for (start,), group in first.with_columns(start=pl.col("index") // size * size).group_by("start"):
        folder = work.range_dir(OffsetRange(int(start), int(start) + size - 1))
        state = _marker(folder, "features")
        if state is None or state.get("settings") != tag:
            continue
        features, source_rows = _feature_files(folder, state), _read_table(folder, state, "rows")
        if features is None or source_rows is None:  # rewritten meanwhile: embed here instead
            continue
        embedded_hash = dict(zip(source_rows["index"], source_rows["content_hash"], strict=True))
        position = {i: p for p, i in enumerate(features.index["index"])}
        for content_hash, index in zip(group["content_hash"], group["index"], strict=True):
            if index in position and embedded_hash.get(index) == content_hash:
                p = position[index]
                found[content_hash] = (np.array(features.vectors[p]), int(features.index["top_class"][p]),
                                       float(features.index["top_score"][p]))
    return {i: found[h] for i, h in zip(hashes["index"], hashes["content_hash"], strict=True) if h in found}


@holding_range_lock
def scan_range(
    work: WorkDir,
    manifest: pl.DataFrame,
    offset_range: OffsetRange,
    settings: DecodeSettings = DecodeSettings(),
    num_threads: int | None = None,
    advance: Advance | None = None,
    features: FeatureSettings | None = None,
    sources: SourceSettings = SourceSettings(),
) -> RangeScanOutcome:
    """Write the range's bad files and statistics, and its embeddings when ``features`` is given.
    Objects, shards and videos are read with ``sources``.

    Rows unchanged since the previous scan of this range (same path, size, mtime, content and
    settings) are copied from it; only new or changed files are decoded, once for both products.
    An image that the crop box of ``features`` misses entirely is a bad file (``bounding_box_outside``).
    """
    folder = work.range_dir(offset_range)
    remove_temp_files(folder)  # half-written files of a killed run (we hold the range lock: one writer)
    _prune(folder)
    rows = range_rows(manifest, offset_range)
    all_indexes = set(rows["index"].to_list())
    crop = features.crop if features is not None else None
    scan_tag = _scan_tag(settings, _crop_fields(crop))
    old_scan = _read_scan(folder)
    scan_keep = _unchanged(rows, _previous_rows(folder, "scan", scan_tag)) if old_scan else set()
    old_scan = old_scan or _empty_scan()
    scan_todo = all_indexes - scan_keep
    feat_todo: set[int] = set()
    if features is not None:
        feat_tag = features.tag(settings)
        old_features = read_range_features(work, offset_range)
        feat_keep = _unchanged(rows, _previous_rows(folder, "features", feat_tag)) if old_features else set()
        known_bad = set(old_scan.bad["index"].to_list()) & scan_keep
        feat_todo = all_indexes - feat_keep - known_bad
    borrowed = _embedded_elsewhere(work, manifest, offset_range, rows, feat_todo, feat_tag) if feat_todo else {}
    todo = rows.filter(pl.col("index").is_in(list(scan_todo | (feat_todo - borrowed.keys()))))
    if advance is not None:
        advance(rows.height - todo.height)
    batcher = _FeatureBatcher(features, len(feat_todo)) if features is not None else None
    bad_rows, stat_rows = [], []
    for item in process_rows(
        todo, settings, num_threads or default_threads(), stats_for=scan_todo,
        prepare=features.prepare if features is not None else None, prepare_for=feat_todo - borrowed.keys(),
        source_settings=sources,
    ):
        index = item.row["index"]
        good = item.bad is None
        if item.bad is not None and index in scan_todo:
            bad_rows.append(bad_row(item.row, item.bad))
        if item.stats is not None:
            missed = crop.miss(item.stats["width"], item.stats["height"]) if crop is not None else None
            if missed is not None:
                bad_rows.append(bad_row(item.row, missed))
                good = False
            else:
                stat_rows.append(item.stats)
        if item.tensor is not None and batcher is not None:
            batcher.add(index, item.tensor, item.row["path"])
        elif item.same_as is not None and batcher is not None:
            batcher.copy(index, item.same_as)
        elif index in borrowed and good and batcher is not None:
            batcher.borrow(index, borrowed[index])
        if advance is not None:
            advance(1)
    for index in sorted(borrowed.keys() - scan_todo):  # not decoded now: their scan rows were reused
        batcher.borrow(index, borrowed[index])  # type: ignore[union-attr]
    bad, stats = old_scan.bad, old_scan.stats
    if scan_todo or not _state_current(folder, "scan", rows, scan_tag):
        keep = pl.col("index").is_in(list(scan_keep))
        bad = pl.concat([bad.filter(keep), pl.DataFrame(bad_rows, schema=BAD_SCHEMA)]).sort("index")
        stats = pl.concat([stats.filter(keep), pl.DataFrame(stat_rows, schema=STATS_SCHEMA)]).sort("index")
        _commit(folder, "scan", rows, scan_tag, {"bad": bad, "stats": stats})
    embedded = copied = 0
    if features is not None and batcher is not None:
        fresh = batcher.result()
        embedded, copied = fresh.index.height, len(batcher.copies) + len(batcher.borrowed)
        if feat_todo or not _state_current(folder, "features", rows, feat_tag):
            merged = _merge_features(old_features, feat_keep, fresh)
            _commit(folder, "features", rows, feat_tag, {"index": merged.index},
                    merged.vectors.astype(np.float32, copy=False))
    return RangeScanOutcome(offset_range.key, rows.height, todo.height, rows.height - todo.height,
                            bad.height, stats.height, embedded, copied)
