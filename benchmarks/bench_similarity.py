"""The similarity stage at 100k–1M on embeddings that behave like real ones, with planted near-copies.

    python benchmarks/bench_similarity.py --n 100000 [--methods hnsw64 hnsw128 ...] \
        [--cache /tmp/bench_similarity] [--out docs/benchmarks.md]

1. Real embeddings (cached in ``--cache``): ``--real`` images made in memory the way
   ``benchmarks/planted_folder.py`` makes them (crops of real photos from scikit-image's data with
   pasted patches and marks, and generated scenes of the demo's four classes, 320x240), plus near
   copies of ``--real-copies`` of them (resized + recompressed, brighter, 3% crop, PNG↔JPEG), all
   embedded with the default model (EfficientNet-Lite0 fp32, as ``dup-pipeline run`` does).
2. Extended to ``n`` vectors by a mixture of probabilistic PCAs fitted to the real embeddings: k-means
   into clusters, then per cluster its mean, its top principal directions with their variances and
   an isotropic residual for the other dimensions (Tipping & Bishop); each synthetic vector is its
   cluster's mean plus Gaussian noise with that covariance, L2-normalized. The nearest-neighbour
   similarity quantiles of real and synthetic vectors (same count) are printed and written so the
   fit can be judged.
3. 1% of the rows are planted near-copies of other rows: a copy lies at a similarity drawn from the
   real copies' similarities, in the direction of a real copy's perturbation (the part of
   ``embed(copy) - embed(source)`` orthogonal to the source).
4. Ground truth: exact (Flat) k-nearest neighbours of every planted source and copy; a planted pair
   "should be listed" when exact search lists it (either side, similarity >= ``--threshold``).
   Methods (each in its own process for its peak RSS): HNSW32 at several efSearch, HNSW on PCA-256
   or SQ8 codes and IVF-Flat / IVF-SQ8 / PCA-IVF with exact re-ranking of ``--rerank`` x (k+1)
   candidates on the full vectors read from the memory-mapped matrix (``dup_pipeline.core.rerank``).
   Reports build and all-neighbour search time, planted-pair recall, recall@k on ``--exact-sample``
   random rows and peak RSS (total and anonymous, i.e. without the memory-mapped matrix's pages).
   At 1M on a loaded machine ``--no-exact-planted`` skips the exact neighbours of the planted rows:
   the denominator is then the planted pairs at similarity >= ``--threshold``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

DIM = 1280
START, END = "<!-- bench_similarity:start -->", "<!-- bench_similarity:end -->"


# ---- 1. real embeddings -------------------------------------------------------------------------

def real_embeddings(cache: Path, count: int, copies: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Embeddings of ``count`` generated images and of near copies of ``copies`` of them (cached)."""
    path = cache / f"real_{count}_{copies}_{seed}.npz"
    if path.exists():
        return dict(np.load(path))
    from PIL import Image

    from dup_pipeline.core.demo import CLASSES, draw_class_image
    from dup_pipeline.core.pipeline import ModelConfig
    from planted_folder import NEAR_KINDS, PHOTO_SEEDS, _encode, _near_copy, _photo, _skimage

    embedder = ModelConfig().feature_settings().embedder
    seeds = {name: _skimage(name) for name in PHOTO_SEEDS}
    rng = np.random.default_rng(seed)
    size = (320, 240)
    vectors, pending = [], []

    def flush() -> None:
        if pending:
            vectors.append(embedder.run(pending)[0])
            pending.clear()

    sources = []
    for i in range(count):
        if rng.random() < 0.4:
            img, _ = _photo(seeds, rng, size)
        else:
            img = draw_class_image(CLASSES[i % len(CLASSES)], rng, size)
        img = Image.open(io.BytesIO(_encode(img, "JPEG"))).convert("RGB")
        if i < copies:
            sources.append(img)
        pending.append(embedder.prepare(img))
        if len(pending) == 64:
            flush()
    for j, img in enumerate(sources):
        near, fmt = _near_copy(img, "JPEG", NEAR_KINDS[j % len(NEAR_KINDS)])
        pending.append(embedder.prepare(Image.open(io.BytesIO(_encode(near, fmt, quality=85))).convert("RGB")))
        if len(pending) == 64:
            flush()
    flush()
    x = np.concatenate(vectors)
    out = {"x": x[:count], "copy_src": x[:copies], "copy": x[count:]}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


# ---- 2./3. the synthetic matrix -----------------------------------------------------------------

def fit_mixture(x: np.ndarray, clusters: int, rank: int, seed: int = 0) -> list[dict]:
    """Per k-means cluster: weight, mean, top ``rank`` principal directions/std devs, residual std."""
    import faiss

    km = faiss.Kmeans(x.shape[1], clusters, niter=25, seed=seed, spherical=True)
    km.train(x)
    _, assign = km.index.search(x, 1)
    parts = []
    for c in range(clusters):
        xc = x[assign[:, 0] == c]
        if len(xc) < 3:
            continue
        mean = xc.mean(0)
        _, s, vt = np.linalg.svd(xc - mean, full_matrices=False)
        var = s**2 / (len(xc) - 1)
        r = min(rank, len(var) - 1)
        residual = max(var[r:].sum(), 1e-12) / (x.shape[1] - r)
        parts.append({"weight": len(xc) / len(x), "mean": mean, "dirs": vt[:r], "std": np.sqrt(var[:r]),
                      "residual": np.sqrt(residual)})
    return parts


def sample_mixture(parts: list[dict], n: int, rng: np.random.Generator) -> np.ndarray:
    weights = np.array([p["weight"] for p in parts])
    which = rng.choice(len(parts), size=n, p=weights / weights.sum())
    out = np.empty((n, DIM), np.float32)
    for c, p in enumerate(parts):
        rows = np.flatnonzero(which == c)
        if not len(rows):
            continue
        z = rng.standard_normal((len(rows), len(p["std"])), dtype=np.float32) * p["std"]
        v = p["mean"] + z @ p["dirs"] + rng.standard_normal((len(rows), DIM), dtype=np.float32) * p["residual"]
        out[rows] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def plant_copies(x: np.ndarray, sources: np.ndarray, real: dict[str, np.ndarray], rng: np.random.Generator,
                 ) -> np.ndarray:
    """Near copies of ``x[sources]``: at a real copy's similarity, along a real copy's perturbation."""
    src, cop = real["copy_src"], real["copy"]
    pick = rng.integers(0, len(src), size=len(sources))
    sims = np.einsum("ij,ij->i", src[pick], cop[pick])
    delta = cop[pick] - src[pick]
    base = x[sources]
    u = delta - np.einsum("ij,ij->i", delta, base)[:, None] * base
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    return (sims[:, None] * base + np.sqrt(np.maximum(1 - sims**2, 0))[:, None] * u).astype(np.float32)


def build_matrix(cache: Path, n: int, real: dict[str, np.ndarray], clusters: int, rank: int, seed: int = 0,
                 ) -> tuple[np.memmap, np.ndarray, list[dict]]:
    """``n`` x DIM float32 memmap (rows shuffled) and the planted pairs (source row, copy row)."""
    path, pairs_path = cache / f"x_{n}_{seed}.f32", cache / f"pairs_{n}_{seed}.npy"
    parts = fit_mixture(real["x"], clusters, rank, seed)
    if not path.exists() or not pairs_path.exists():
        rng = np.random.default_rng(seed + 1)
        n_copies = n // 100
        n_base = n - n_copies
        perm = rng.permutation(n)  # row of generated vector i
        tmp = path.with_suffix(".tmp")
        x = np.memmap(tmp, dtype=np.float32, mode="w+", shape=(n, DIM))
        chunk = 50_000
        src_idx = np.sort(rng.choice(n_base, size=n_copies, replace=False))
        src_vecs = np.empty((n_copies, DIM), np.float32)
        for start in range(0, n_base, chunk):
            block = sample_mixture(parts, min(chunk, n_base - start), rng)
            x[perm[start:start + len(block)]] = block
            inside = (src_idx >= start) & (src_idx < start + len(block))
            src_vecs[inside] = block[src_idx[inside] - start]
        copies = plant_copies(src_vecs, np.arange(n_copies), real, rng)
        x[perm[n_base:]] = copies
        x.flush()
        del x
        os.replace(tmp, path)
        np.save(pairs_path, np.stack([perm[src_idx], perm[n_base:]], axis=1))
    return np.memmap(path, dtype=np.float32, mode="r", shape=(n, DIM)), np.load(pairs_path), parts


def nn_quantiles(x: np.ndarray, queries: np.ndarray) -> list[float]:
    """Quantiles (1, 10, 50, 90, 99%) of each query row's nearest-neighbour similarity (self excluded)."""
    import faiss

    sims, ids = faiss.knn(np.ascontiguousarray(x[queries]), np.asarray(x), 2, faiss.METRIC_INNER_PRODUCT)
    nn = np.where(ids[:, 0] == queries, sims[:, 1], sims[:, 0])
    return [round(float(q), 3) for q in np.quantile(nn, [0.01, 0.1, 0.5, 0.9, 0.99])]


# ---- 4. methods -----------------------------------------------------------------------------------

METHODS = {
    # name: (faiss factory, metric of the index, search params tried on one build, exact re-ranking)
    "hnsw": ("HNSW32", "ip", ["efSearch=64", "efSearch=128", "efSearch=256"], False),
    "pca256-hnsw-rerank": ("PCA256,HNSW32", "l2", ["efSearch=128"], True),
    "sq8-hnsw-rerank": ("HNSW32,SQ8", "ip", ["efSearch=128"], True),
    "ivf-flat": ("IVF{nlist},Flat", "ip", ["nprobe=16", "nprobe=32"], False),
    "ivf-sq8-rerank": ("IVF{nlist},SQ8", "ip", ["nprobe=32"], True),
    "pca256-ivf-rerank": ("PCA256,IVF{nlist},Flat", "l2", ["nprobe=32", "nprobe=64"], True),
}


class RssPeak:
    """Peak RssAnon / VmRSS of this process, sampled every 0.5 s from /proc/self/status."""

    def __init__(self) -> None:
        self.anon = self.total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                          if ":" in line)
            self.anon = max(self.anon, int(fields["RssAnon"].split()[0]) / 2**20)
            self.total = max(self.total, int(fields["VmRSS"].split()[0]) / 2**20)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_method(name: str, path: str, n: int, k: int, rerank_factor: int, threads: int, params: list[str],
               ) -> list[dict]:
    """Build ``name``'s index over the memmap at ``path`` once, then search every row with each param."""
    import faiss

    from dup_pipeline.core.rerank import rerank

    faiss.omp_set_num_threads(threads)
    rss = RssPeak()
    x = np.memmap(path, dtype=np.float32, mode="r", shape=(n, DIM))
    factory, metric, _, do_rerank = METHODS[name]
    nlist = 1 << int(round(np.log2(4 * np.sqrt(n))))
    factory = factory.format(nlist=nlist)
    index = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2)
    t = time.perf_counter()
    if not index.is_trained:
        sample = np.random.default_rng(0).choice(n, size=min(n, max(32 * nlist, 100_000)), replace=False)
        index.train(np.ascontiguousarray(x[np.sort(sample)]))
    for start in range(0, n, 65_536):
        index.add(np.ascontiguousarray(x[start:start + 65_536]))
    build = time.perf_counter() - t
    kk = (k + 1) * (rerank_factor if do_rerank else 1)
    results = []
    for param in params:
        faiss.ParameterSpace().set_index_parameters(index, param)
        t = time.perf_counter()
        sims = np.lib.format.open_memmap(f"{path}.{name}.{param}.sims.npy", "w+", np.float32, (n, k + 1))
        ids = np.lib.format.open_memmap(f"{path}.{name}.{param}.ids.npy", "w+", np.int64, (n, k + 1))
        for start in range(0, n, 65_536):
            q = np.ascontiguousarray(x[start:start + 65_536])
            s, i = index.search(q, kk)
            if do_rerank:
                s, i = rerank(x, q, i, k + 1)
            elif metric == "l2":
                s = 1 - s / 2
            sims[start:start + len(q)], ids[start:start + len(q)] = s[:, :k + 1], i[:, :k + 1]
        sims.flush()
        ids.flush()
        results.append({"method": name, "index": factory, "param": param,
                        "rerank": f"{kk} candidates" if do_rerank else "", "build_s": build,
                        "search_s": time.perf_counter() - t})
    rss.stop()
    hwm = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    for r in results:  # VmHWM: this process's own peak (ru_maxrss would include the parent's before exec)
        r["peak_rss_gib"] = int(hwm["VmHWM"].split()[0]) / 2**20
        r["peak_anon_gib"] = rss.anon
    return results


def isolated(*args) -> list[dict]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_method, *args).result()


# ---- scoring ------------------------------------------------------------------------------------

def exact_lists(x: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k+1 nearest neighbours (self included) of ``x[rows]``, by blocks of queries."""
    import faiss

    sims, ids = [], []
    for start in range(0, len(rows), 4096):
        q = np.ascontiguousarray(x[rows[start:start + 4096]])
        s, i = faiss.knn(q, np.asarray(x), k + 1, faiss.METRIC_INNER_PRODUCT)
        sims.append(s)
        ids.append(i)
    return np.concatenate(sims), np.concatenate(ids)


def linked(ids: np.ndarray, sims: np.ndarray, pairs: np.ndarray, threshold: float, row_of: dict[int, int]
           ) -> np.ndarray:
    """Whether each pair (a, b) is listed: b among a's neighbours or a among b's, similarity >= threshold."""
    out = np.zeros(len(pairs), bool)
    for p, (a, b) in enumerate(pairs):
        for u, v in ((a, b), (b, a)):
            r = row_of[u]
            hit = (ids[r] == v) & (sims[r] >= threshold)
            if hit.any():
                out[p] = True
                break
    return out


def parse_methods(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``name`` or ``name:param/param`` (e.g. ``hnsw:efSearch=128``) -> (name, search params)."""
    out = []
    for spec in specs:
        name, _, params = spec.partition(":")
        if name not in METHODS:
            raise SystemExit(f"--methods: unknown method {name!r}; known: {', '.join(METHODS)}")
        out.append((name, params.split("/") if params else METHODS[name][2]))
    return out


def ground_truth(cache: Path, x: np.ndarray, pairs: np.ndarray, k: int, n: int, sample_size: int = 1000,
                 planted: bool = True) -> dict[str, np.ndarray]:
    """Exact neighbours of ``sample_size`` random rows and (``planted``) of every planted row (cached)."""
    name = f"exact_{n}_{k}.npz" if sample_size == 1000 and planted else f"exact_{n}_{k}_s{sample_size}_p{int(planted)}.npz"
    path = cache / name
    if path.exists():
        return dict(np.load(path))
    sample = np.sort(np.random.default_rng(3).choice(n, size=sample_size, replace=False))
    rows = np.union1d(np.unique(pairs.ravel()), sample) if planted else sample
    t = time.perf_counter()
    sims, ids = exact_lists(x, rows, k)
    out = {"rows": rows, "sample": sample, "sims": sims, "ids": ids, "seconds": np.float64(time.perf_counter() - t)}
    np.savez(path, **out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        help=f"of {', '.join(METHODS)}; 'name:param/param' picks the search params")
    parser.add_argument("--prepare-only", action="store_true", help="only the matrix and the exact ground truth")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/bench_similarity"))
    parser.add_argument("--out", type=Path, default=None, help="write the results into this markdown file")
    parser.add_argument("--real", type=int, default=3000, help="real images embedded")
    parser.add_argument("--real-copies", type=int, default=400, help="real near-copy pairs embedded")
    parser.add_argument("--clusters", type=int, default=48)
    parser.add_argument("--rank", type=int, default=32, help="principal directions per cluster")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--rerank", type=int, default=2, help="candidates = rerank x (k+1) for *-rerank methods")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="", help="suffix of this run's section in --out (several runs per n)")
    parser.add_argument("--exact-sample", type=int, default=1000, help="random rows with exact neighbours (recall@k)")
    parser.add_argument("--no-exact-planted", action="store_true",
                        help="skip exact neighbours of planted rows (slow at 1M): a planted pair should be listed "
                             "when its similarity is >= threshold")
    args = parser.parse_args()
    methods = parse_methods(args.methods)

    t = time.perf_counter()
    real = real_embeddings(args.cache, args.real, args.real_copies)
    copy_sims = np.einsum("ij,ij->i", real["copy_src"], real["copy"])
    print(f"real embeddings: {len(real['x'])} + {len(real['copy'])} copies ({time.perf_counter() - t:.0f} s); "
          f"copy similarity quantiles 1/10/50/90/99%: "
          f"{np.round(np.quantile(copy_sims, [0.01, 0.1, 0.5, 0.9, 0.99]), 3).tolist()}", flush=True)
    t = time.perf_counter()
    x, pairs, parts = build_matrix(args.cache, args.n, real, args.clusters, args.rank)
    print(f"matrix {x.shape} with {len(pairs)} planted copies ({time.perf_counter() - t:.0f} s)", flush=True)
    m = len(real["x"])
    real_q = nn_quantiles(real["x"], np.arange(m))
    synth_q = nn_quantiles(sample_mixture(parts, m, np.random.default_rng(7)), np.arange(m))
    truth = ground_truth(args.cache, x, pairs, args.k, args.n, args.exact_sample, not args.no_exact_planted)
    row_of = {int(r): j for j, r in enumerate(truth["rows"])}
    sample = truth["sample"]
    srows = [row_of[int(r)] for r in sample]
    nn = np.where(truth["ids"][srows, 0] == sample, truth["sims"][srows, 1], truth["sims"][srows, 0])
    at_n_q = [round(float(q), 3) for q in np.quantile(nn, [0.01, 0.1, 0.5, 0.9, 0.99])]
    if args.no_exact_planted:
        should = np.einsum("ij,ij->i", x[pairs[:, 0]], x[pairs[:, 1]]) >= args.threshold
    else:
        should = linked(truth["ids"], truth["sims"], pairs, args.threshold, row_of)
    print(f"nearest-neighbour similarity quantiles 1/10/50/90/99%: real {real_q}, synthetic (same count) "
          f"{synth_q}, synthetic at n={args.n} {at_n_q}; exact search of {len(truth['rows'])} rows "
          f"{float(truth['seconds']):.0f} s; planted pairs exact search lists: {should.sum()} of {len(pairs)}",
          flush=True)
    if args.prepare_only:
        return
    path = str(args.cache / f"x_{args.n}_0.f32")
    identity = {int(q): int(q) for q in np.union1d(truth["rows"], pairs.ravel())}
    results = []
    for name, params in methods:
        for r in isolated(name, path, args.n, args.k, args.rerank, args.threads, params):
            ids = np.load(f"{path}.{name}.{r['param']}.ids.npy", mmap_mode="r")
            sims = np.load(f"{path}.{name}.{r['param']}.sims.npy", mmap_mode="r")
            got = linked(ids, sims, pairs[should], args.threshold, identity)
            r["planted_recall"] = float(got.mean()) if len(got) else None
            r["missed"] = int((~got).sum())
            r["recall_at_k"] = float(np.mean([
                len(set(ids[q][ids[q] != q][:args.k].tolist())
                    & set(truth["ids"][row_of[q]][truth["ids"][row_of[q]] != q][:args.k].tolist())) / args.k
                for q in sample.tolist()]))
            del ids, sims
            for suffix in ("ids", "sims"):
                os.unlink(f"{path}.{name}.{r['param']}.{suffix}.npy")
            results.append(r)
            print(json.dumps(r), flush=True)
            if args.out:  # after every result, so a cut-off run keeps what it measured
                write_section(args, real, copy_sims, real_q, synth_q, at_n_q, int(should.sum()), len(pairs), results)


def write_section(args, real, copy_sims, real_q, synth_q, at_n_q, should, planted, results) -> None:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    key = f"_{args.n}{'_' + args.tag if args.tag else ''}"
    marker_start, marker_end = START.replace(":start", f"{key}:start"), END.replace(":end", f"{key}:end")
    lines = [marker_start, f"### {args.n:,} vectors{' (' + args.tag + ')' if args.tag else ''}", "",
             f"Measured {when}, load average {load} at the last result (2 cores shared with other work: times "
             f"are noisy and pessimistic): `python benchmarks/bench_similarity.py --n {args.n} --methods "
             f"{' '.join(args.methods)}"
             + (f" --exact-sample {args.exact_sample}" if args.exact_sample != 1000 else "")
             + (" --no-exact-planted" if args.no_exact_planted else "")
             + (f" --tag {args.tag}" if args.tag else "") + f"`, {args.threads} threads, k={args.k}, threshold={args.threshold}.",
             "",
             f"- Real embeddings: {len(real['x'])} images + {len(real['copy'])} near copies; copy similarity "
             f"quantiles (1/10/50/90/99%) {np.round(np.quantile(copy_sims, [0.01, 0.1, 0.5, 0.9, 0.99]), 3).tolist()}.",
             f"- Nearest-neighbour similarity quantiles: real {real_q}, synthetic at the same count {synth_q}, "
             f"synthetic at n={args.n:,} {at_n_q}.",
             f"- Planted copies: {planted}; " + (
                 f"{should} of them at similarity ≥ {args.threshold} (the denominator; exact neighbours of the "
                 f"planted rows not computed at this size)" if args.no_exact_planted else
                 f"exact search (k={args.k}) lists {should} of them (similarity ≥ {args.threshold}): the denominator")
             + f"; recall@k on {args.exact_sample} random rows.",
             "", "| method | index | search | build s | search s | planted recall (missed) | recall@k | "
             "peak RSS GiB (anon) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['method']} | `{r['index']}` | {r['param']}{', rerank ' + r['rerank'] if r['rerank'] else ''}"
                     f" | {r['build_s']:.0f} | {r['search_s']:.0f} | {100 * r['planted_recall']:.2f}% ({r['missed']}) "
                     f"| {100 * r['recall_at_k']:.1f}% | {r['peak_rss_gib']:.2f} ({r['peak_anon_gib']:.2f}) |")
    lines.append(marker_end)
    section = "\n".join(lines) + "\n"
    text = args.out.read_text() if args.out.exists() else "# Benchmarks\n\n"
    if marker_start in text:
        head, rest = text.split(marker_start, 1)
        text = head + section.rstrip("\n") + rest.split(marker_end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
