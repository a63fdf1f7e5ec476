"""Image search: embed query images with a work_dir's model and look them up in its faiss index."""

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from dup_pipeline.core.decode import BadFile, DecodedImage, decode_image, to_rgb
from dup_pipeline.core.errors import ConfigError, InputError, WorkDirError
from dup_pipeline.core.features import load_features
from dup_pipeline.core.pipeline import ModelConfig
from dup_pipeline.core.range_scan import FeatureSettings
from dup_pipeline.core.rerank import search_queries
from dup_pipeline.core.similarity import GraphConfig, open_index
from dup_pipeline.core.workdir import WorkDir


def embed_files(settings: FeatureSettings, paths: list[str]) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """``(vectors, good paths, {bad path: reason})``: L2-normalized embeddings of the readable images."""
    prepared, good, bad = [], [], {}
    for path in paths:
        try:
            prepared.append(settings.prepare(decode_image(str(path))))
            good.append(str(path))
        except BadFile as exc:
            bad[str(path)] = exc.reason
    if not prepared:
        return np.empty((0, settings.embedder.spec.dim), np.float32), good, bad
    vectors, _ = settings.embedder.run(prepared, good)
    return vectors, good, bad


def embed_image(settings: FeatureSettings, img: Image.Image, name: str = "query") -> np.ndarray:
    """The (1, dim) embedding of an in-memory image."""
    rgb = to_rgb(img)
    decoded = DecodedImage(rgb, rgb.width, rgb.height, img.mode, img.format or "", len(rgb.getbands()))
    return settings.embedder.run([settings.prepare(decoded)], [name])[0]


class ImageSearch:
    """The ``k`` nearest indexed images of a query image, by the similarity of the run's distance.

    With an approximate index (IVF, PQ, SQ, PCA...) candidates are re-ranked on the feature matrix
    (:func:`dup_pipeline.core.rerank.search_queries`), as the similarity stage does, so every
    similarity is exact.
    """

    def __init__(self, work_dir: str | os.PathLike[str], k: int, model: ModelConfig = ModelConfig(),
                 faiss_param: str = "") -> None:
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        work = WorkDir(work_dir)
        if not (work.faiss_index.exists() and work.features_meta.exists() and work.index_meta.exists()):
            raise WorkDirError(f"{work.root} has no faiss index: run the analysis (run mode 0) there first")
        built = json.loads(work.index_meta.read_text())["tag"]
        graph = GraphConfig(faiss_mode=built["faiss_mode"], distance=built["distance"],
                            faiss_param=faiss_param or "")
        self.k, self.distance, self.faiss_mode = k, graph.distance, graph.faiss_mode
        self.features = load_features(work)
        self.settings = model.feature_settings()
        if self.settings.embedder.spec.model_id != self.features.model_id:
            raise ConfigError(f"model_path {model.model_path!r} is not the model of {work.root} "
                              f"({self.features.model_id}): pass the model_path the run used")
        self.index = open_index(work, self.features.matrix, graph)

    def vectors(self, vectors: np.ndarray, names: list[str]) -> pl.DataFrame:
        """``from, to, distance, index``: each query's neighbours, most similar first."""
        if not len(vectors):
            return pl.DataFrame(schema={"from": pl.String, "to": pl.String, "distance": pl.Float32,
                                        "index": pl.Int64})
        queries = np.ascontiguousarray(vectors, dtype=np.float32)
        sims, rows = search_queries(self.index, self.features.matrix, queries, min(self.k, self.index.ntotal),
                                    self.faiss_mode, self.distance)
        found = rows >= 0
        table = self.features.index
        query = np.broadcast_to(np.asarray(names, dtype=object)[:, None], rows.shape)[found]
        return pl.DataFrame({
            "from": list(query), "to": table["filename"].gather(rows[found]), "distance": sims[found],
            "index": table["index"].gather(rows[found]),
        })

    def image(self, filename: str | os.PathLike[str], img: Image.Image | None = None) -> pl.DataFrame:
        """Neighbours of the image file ``filename`` (or of ``img``, named ``filename``)."""
        if img is not None:
            return self.vectors(embed_image(self.settings, img, str(filename)), [str(filename)])
        if not Path(filename).is_file():
            raise InputError(f"query image {str(filename)!r} does not exist")
        vectors, good, bad = embed_files(self.settings, [str(filename)])
        if bad:
            raise InputError(f"query image {str(filename)!r} cannot be used: {bad[str(filename)]}")
        return self.vectors(vectors, good)
