"""Calibrate the similarity thresholds on real photographs with planted copies.

    python benchmarks/calibrate_photos.py [--model auto] [--preprocess crop] [--root DIR]
                                          [--out docs/calibration.md] [--no-variants]
                                          [--fastdup-python /work/fastdup_venv/bin/python]

The photographs come from packages (photographs only, no drawings): scikit-image's data,
scikit-learn's sample images, and the Debian wallpaper packages lomiri-wallpapers-16.04,
lomiri-wallpapers-20.04, mate-backgrounds and plasma-workspace-wallpapers (fetched with
``apt-get download`` and unpacked with ``dpkg -x`` into ``ROOT/debian`` when missing). Each photo
(longer side capped at 2048 px, saved as JPEG q95) gets eight planted copies: exact byte copy,
re-encode (JPEG q50), resize 50%, crop 10% (a 90%x90% window), brightness x1.3, horizontal flip,
rotation 2-8 degrees (black corners) and a watermark. Hard negatives are genuinely different
photographs of one subject (flowers, insects, birds, lakes, mountains, foliage, ...).

The images are embedded by the pipeline itself (``run_pipeline`` with ``--model``), then the script
prints and writes (markdown) per transform the lowest / 10th percentile / median similarity of a
copy to its original, the hard negatives' similarities, and per candidate threshold the pair
precision and the share of images whose copy is found, both from the pipeline's own kNN pairs
(``similarity.parquet``) and for components. Unless ``--no-variants``, it also embeds the same
files with other preprocessing choices (squash or centre crop, crop fraction, resampling filter,
aspect-preserving pad, full-resolution decoding, mirror averaging) to see which narrows the gap between copies and
look-alikes. With ``--fastdup-python`` (the python of a separate venv with fastdup), fastdup runs
on the same files at its defaults (``fastdup_peer.py``) and its ``similarity.csv`` is scored alike.
"""

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dup_pipeline.core.decode import decode_image
from dup_pipeline.core.embed.model import Embedder
from dup_pipeline.core.features import load_features
from dup_pipeline.core.pipeline import ModelConfig, PipelineConfig, run_pipeline
from dup_pipeline.core.similarity import GraphConfig
from dup_pipeline.core.workdir import WorkDir

SKIMAGE = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png",
           "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "microaneurysms.png", "moon.png",
           "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg"]
SKLEARN = ["china.jpg", "flower.jpg"]
DEBIAN_PACKAGES = ["lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds",
                   "plasma-workspace-wallpapers"]
LOMIRI = ["Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
          "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "analogpattern_by_Peter_Nerlich",
          "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
          "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
          "sunset_by_Aitzol_Berasategi", "Infinite-Sea_by_Aury88", "Kleiber_by_Lukas_Baubkus"]
MATE = ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower"]
PLASMA = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
          "OneStandsOut", "Path", "summer_1am"]
# Genuinely different photographs of one subject: pairs inside a group must NOT be reported.
SUBJECTS = {
    "flowers": ["mate-FreshFlower", "mate-YellowFlower", "mate-Garden", "sklearn-flower"],
    "insects": ["mate-LadyBird", "lomiri-Dragonfly_by_Bolly", "mate-TwoWings"],
    "birds": ["lomiri-free_by_Peter_Nerlich", "lomiri-Kleiber_by_Lukas_Baubkus"],
    "lakes and piers": ["plasma-BytheWater", "plasma-ColdRipple", "plasma-DarkestHour", "plasma-summer_1am",
                        "plasma-EveningGlow", "lomiri-Bridge_by_Sander_Klootwijk"],
    "mountains": ["lomiri-aitzgorri_by_Aitzol_Berasategi", "lomiri-picosdeeuropa_by_Aitzol_Berasategi",
                  "lomiri-sunset_by_Aitzol_Berasategi"],
    "foliage and grass": ["mate-GreenMeadow", "skimage-grass", "mate-Blinds", "mate-RainDrops",
                          "plasma-OneStandsOut", "plasma-Path"],
    "night sky": ["lomiri-Infinite-Sea_by_Aury88", "skimage-hubble_deep_field"],
    "retinas": ["skimage-retina", "skimage-microaneurysms"],
    "microscopy": ["skimage-cell", "skimage-ihc"],
    "textures": ["skimage-brick", "skimage-gravel", "mate-Wood"],
    "motorcycle (stereo pair)": ["skimage-motorcycle_left", "skimage-motorcycle_right"],
}
# Two shots of one scene a few centimetres apart: near-duplicates to most users, so neither true nor
# false: left out of precision and reported with the hard negatives.
IGNORED_GROUPS = {"motorcycle (stereo pair)"}
MIN_SIDE = 256  # photographs with a shorter side are thumbnails, not photos as users have them
TRANSFORMS = ["exact", "reencode", "resize50", "crop10", "brightness", "flip", "rotate", "watermark"]
THRESHOLDS = [round(t, 2) for t in np.arange(0.70, 0.951, 0.01)]
MAX_SIDE = 2048


def fetch_debian(root: Path) -> Path:
    """Unpack the wallpaper packages into ``root`` (apt-get download + dpkg -x) unless already there."""
    if (root / "usr/share/backgrounds").is_dir():
        return root
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def source_photos(debian: Path) -> dict[str, Path]:
    """Source name -> photo file."""
    import skimage
    import sklearn.datasets

    sk = Path(skimage.__file__).parent / "data"
    skl = Path(sklearn.datasets.__file__).parent / "images"
    found = {f"skimage-{Path(n).stem}": sk / n for n in SKIMAGE}
    found |= {f"sklearn-{Path(n).stem}": skl / n for n in SKLEARN}
    found |= {f"lomiri-{n}": debian / "usr/share/backgrounds" / f"{n}.jpg" for n in LOMIRI}
    found |= {f"mate-{n}": debian / "usr/share/backgrounds/mate/nature" / f"{n}.jpg" for n in MATE}
    for name in PLASMA:
        sizes = sorted((debian / "usr/share/wallpapers" / name / "contents/images").glob("*x*.*"),
                       key=lambda p: np.prod([int(v) for v in p.stem.split("x")]))
        if sizes:
            found[f"plasma-{name}"] = sizes[-1]
    return {k: v for k, v in found.items() if v.is_file() and min(Image.open(v).size) >= MIN_SIDE}


def _watermark(img: Image.Image) -> Image.Image:
    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = out.size
    size = max(12, h // 10)
    font = ImageFont.load_default(size=size)
    draw.rectangle((0, h - int(size * 1.6), w, h), fill=(0, 0, 0, 110))
    draw.text((w // 20, h - int(size * 1.4)), "(c) stock photo 2026", font=font, fill=(255, 255, 255, 200))
    return Image.alpha_composite(out, layer).convert("RGB")


def _transforms(rng: np.random.Generator) -> dict[str, Callable[[Image.Image], Image.Image]]:
    def crop(img: Image.Image) -> Image.Image:
        w, h = img.size
        x, y = int(rng.integers(0, w // 10 + 1)), int(rng.integers(0, h // 10 + 1))
        return img.crop((x, y, x + int(w * 0.9), y + int(h * 0.9)))

    def rotate(img: Image.Image) -> Image.Image:
        angle = float(rng.uniform(2, 8)) * float(rng.choice([-1, 1]))
        return img.rotate(angle, resample=Image.Resampling.BICUBIC)

    return {
        "resize50": lambda img: img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.LANCZOS),
        "crop10": crop,
        "brightness": lambda img: ImageEnhance.Brightness(img).enhance(1.3),
        "flip": ImageOps.mirror,
        "rotate": rotate,
        "watermark": _watermark,
    }


def build_set(sources: dict[str, Path], out: Path, seed: int) -> pl.DataFrame:
    """Write originals and copies under ``out``; one row per file: ``path, source, transform``."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    transforms = _transforms(rng)
    rows = []
    for name, path in sorted(sources.items()):
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        original = out / f"{name}__original.jpg"
        img.save(original, quality=95)
        rows.append((str(original), name, "original"))
        shutil.copyfile(original, out / f"{name}__exact.jpg")
        rows.append((str(out / f"{name}__exact.jpg"), name, "exact"))
        img.save(out / f"{name}__reencode.jpg", quality=50)
        rows.append((str(out / f"{name}__reencode.jpg"), name, "reencode"))
        for transform, fn in transforms.items():
            target = out / f"{name}__{transform}.jpg"
            fn(img).save(target, quality=90)
            rows.append((str(target), name, transform))
    return pl.DataFrame(rows, schema=["path", "source", "transform"], orient="row")


def _pair_frame(sim: np.ndarray, files: pl.DataFrame) -> pl.DataFrame:
    """Every unordered pair of the exact similarity matrix with its kind."""
    i, j = np.triu_indices(sim.shape[0], 1)
    src = files["source"].to_numpy()
    group = {s: g for g, members in SUBJECTS.items() for s in members}
    gi = np.array([group.get(s, "") for s in src])
    return pl.DataFrame({"i": i, "j": j, "sim": sim[i, j], "same": src[i] == src[j],
                         "hard": (gi[i] == gi[j]) & (gi[i] != "") & (src[i] != src[j]), "group": gi[i]})


def copy_table(sim: np.ndarray, files: pl.DataFrame) -> pl.DataFrame:
    """Per transform: similarity of each copy to its original (lowest, 10th percentile, median)."""
    original = {s: k for k, (s, t) in enumerate(zip(files["source"], files["transform"])) if t == "original"}
    sims = [(t, float(sim[k, original[s]])) for k, (s, t) in enumerate(zip(files["source"], files["transform"]))
            if t != "original"]
    df = pl.DataFrame(sims, schema=["transform", "sim"], orient="row")
    return (df.group_by("transform").agg(pl.len().alias("copies"), pl.col("sim").min().alias("lowest"),
                                         pl.col("sim").quantile(0.1, "linear").alias("p10"),
                                         pl.col("sim").median().alias("median"))
            .sort(pl.col("transform").replace_strict(TRANSFORMS, list(range(len(TRANSFORMS))))))


def hard_negative_table(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per subject: how similar different photographs of it are (highest, median)."""
    return (pairs.filter(pl.col("hard")).group_by("group")
            .agg(pl.len().alias("pairs"), pl.col("sim").max().alias("highest"), pl.col("sim").median().alias("median"))
            .sort("highest", descending=True))


def _ignored(src: np.ndarray) -> np.ndarray:
    """The group id of sources whose pairs are neither true nor false (-1 for the others)."""
    ids = {s: g for g, (name, members) in enumerate(SUBJECTS.items()) if name in IGNORED_GROUPS for s in members}
    return np.array([ids.get(s, -1) for s in src])


def sweep(listed: pl.DataFrame, files: pl.DataFrame) -> pl.DataFrame:
    """Per threshold, from listed pairs ``i, j, sim``: pair precision, share of images whose copy is
    found, and for components at that threshold the images in mixed components / split sources
    (ignored groups count as one source)."""
    src = files["source"].to_numpy()
    ignored = _ignored(src)
    unit = np.where(ignored >= 0, np.char.add("ignored-", ignored.astype(str)), src)
    n = files.height
    rows = []
    for t in THRESHOLDS:
        kept = listed.filter(pl.col("sim") >= t)
        i, j = kept["i"].to_numpy(), kept["j"].to_numpy()
        keep = (src[i] == src[j]) | (ignored[i] < 0) | (ignored[i] != ignored[j])
        i, j = i[keep], j[keep]
        same = src[i] == src[j]
        found = np.zeros(n, dtype=bool)
        found[i[same]] = True
        found[j[same]] = True
        graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        per_comp = pl.DataFrame({"comp": comp, "source": unit})
        mixed_comps = per_comp.group_by("comp").agg(pl.col("source").n_unique().alias("k")).filter(pl.col("k") > 1)
        mixed = int(per_comp.join(mixed_comps, on="comp", how="semi").height)
        split = int(pl.DataFrame({"comp": comp, "source": src}).group_by("source")
                    .agg(pl.col("comp").n_unique().alias("c")).filter(pl.col("c") > 1).height)
        rows.append((t, len(i), int(same.sum()), float(same.mean()) if len(i) else 1.0, float(found.mean()),
                     mixed, split))
    return pl.DataFrame(rows, schema=["threshold", "pairs", "true_pairs", "precision", "image_recall",
                                      "images_in_mixed_components", "sources_split"], orient="row")


def exact_pairs(sim: np.ndarray) -> pl.DataFrame:
    i, j = np.triu_indices(sim.shape[0], 1)
    keep = sim[i, j] >= THRESHOLDS[0]
    return pl.DataFrame({"i": i[keep], "j": j[keep], "sim": sim[i, j][keep]})


def best_threshold(table: pl.DataFrame, precision: float = 0.98) -> dict:
    """The threshold with the highest image recall at pair precision >= ``precision``."""
    ok = table.filter(pl.col("precision") >= precision).sort(["image_recall", "threshold"], descending=[True, True])
    return ok.row(0, named=True) if ok.height else {}


def _prepare_variants(embedder: Embedder) -> dict[str, Callable[[str], list[np.ndarray]]]:
    """Each variant makes model-sized images; ``embedder`` (preprocess=squash) turns them into model
    input as the pipeline does (its own resize is then a no-op)."""
    size = (embedder.spec.width, embedder.spec.height)

    def reduced(path: str) -> Image.Image:
        return decode_image(path).image

    def squash(img: Image.Image, resample=Image.Resampling.BILINEAR) -> np.ndarray:
        return embedder.prepare(img.resize(size, resample))

    def pad(img: Image.Image) -> np.ndarray:
        return embedder.prepare(ImageOps.pad(img, size, Image.Resampling.BILINEAR, color=(127, 127, 127)))

    def centre(img: Image.Image, bleed: float = 0.0) -> np.ndarray:
        return embedder.prepare(ImageOps.fit(img, size, Image.Resampling.BILINEAR, bleed=bleed))

    return {
        "squash, bilinear (before features version 4)": lambda p: [squash(reduced(p))],
        "squash, bicubic": lambda p: [squash(reduced(p), Image.Resampling.BICUBIC)],
        "squash, full-resolution decode": lambda p: [squash(decode_image(p, work_side=1 << 20).image)],
        "aspect-preserving pad": lambda p: [pad(reduced(p))],
        "centre crop, whole shorter side": lambda p: [centre(reduced(p))],
        "centre crop, central 87.5% (preprocess=crop)": lambda p: [centre(reduced(p), 0.0625)],
        "centre crop 87.5%, full-resolution decode": lambda p: [centre(decode_image(p, work_side=1 << 20).image,
                                                                        0.0625)],
        "squash + mirror average": lambda p: [squash(r := reduced(p)), squash(ImageOps.mirror(r))],
        "pad + mirror average": lambda p: [pad(r := reduced(p)), pad(ImageOps.mirror(r))],
    }


def embed_variant(embedder: Embedder, paths: list[str], prepare: Callable[[str], list[np.ndarray]],
                  batch: int = 32) -> np.ndarray:
    """Embeddings, the views of an image averaged and L2-normalized."""
    out = []
    for b in range(0, len(paths), batch):
        views = [prepare(p) for p in paths[b:b + batch]]
        flat = [v for vs in views for v in vs]
        vectors, _ = embedder.run(flat)
        per = len(views[0])
        vectors = vectors.reshape(len(views), per, -1).mean(axis=1)
        out.append(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return np.concatenate(out)


def fastdup_sweep(python: str, images: Path, work: Path, files: pl.DataFrame) -> pl.DataFrame:
    """fastdup at its defaults on ``images``; its listed pairs scored like ours."""
    peer = Path(__file__).with_name("fastdup_peer.py")
    subprocess.run([python, str(peer), str(images), str(work)], check=True, stdout=subprocess.DEVNULL)
    row = {Path(p).name: r for p, r in zip(files["path"], files["row"])}  # file names are unique in the set
    name = pl.col("from", "to").str.split("/").list.last()
    listed = pl.read_csv(work / "similarity.csv").select(
        name.replace_strict(row), pl.col("distance").alias("sim")).rename({"from": "a", "to": "b"})
    listed = listed.select(pl.min_horizontal("a", "b").alias("i"), pl.max_horizontal("a", "b").alias("j"), "sim")
    return sweep(listed.unique(["i", "j"]), files)


def _md(df: pl.DataFrame, digits: int = 3) -> str:
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.iter_rows():
        lines.append("| " + " | ".join(f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "calibrate_photos")
    parser.add_argument("--out", type=Path, default=Path("docs/calibration.md"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="auto", help="model_path of the pipeline run")
    parser.add_argument("--preprocess", default="crop", help="preprocess of the pipeline run (crop or squash)")
    parser.add_argument("--no-variants", action="store_true", help="skip the preprocessing comparison")
    parser.add_argument("--fastdup-python", help="python of a separate venv with fastdup: score fastdup alike")
    args = parser.parse_args()

    sources = source_photos(fetch_debian(args.root / "debian"))
    images = args.root / "images"
    shutil.rmtree(images, ignore_errors=True)
    files = build_set(sources, images, args.seed)
    work = args.root / "work"
    shutil.rmtree(work, ignore_errors=True)
    # List every pair down to the lowest candidate so the sweep sees what each threshold would list.
    graph = GraphConfig(threshold=THRESHOLDS[0], ccthreshold=THRESHOLDS[0])
    model = ModelConfig(model_path=args.model, preprocess=args.preprocess)
    run_pipeline(PipelineConfig(str(images), str(work), graph=graph, model=model, report=False))
    wd = WorkDir(work)
    manifest = pl.read_parquet(wd.manifest).select("index", "path")
    features = load_features(wd)
    order = features.index.join(manifest, on="index").select("index", "path")
    files = order.join(files, on="path", how="left").with_row_index("row")
    matrix = np.asarray(features.matrix)
    sim = matrix @ matrix.T
    row_of = dict(zip(files["index"], files["row"]))
    listed = pl.read_parquet(wd.similarity_parquet).select(
        pl.col("from").replace_strict(row_of).alias("a"), pl.col("to").replace_strict(row_of).alias("b"),
        pl.col("distance").alias("sim"))
    listed = listed.select(pl.min_horizontal("a", "b").alias("i"), pl.max_horizontal("a", "b").alias("j"), "sim")

    pairs = _pair_frame(sim, files)
    counted = ~(pl.col("hard") & pl.col("group").is_in(list(IGNORED_GROUPS)))
    negatives = pairs.filter(~pl.col("same") & counted)["sim"].to_numpy()
    copies = copy_table(sim, files)
    hard = hard_negative_table(pairs)
    knn_sweep = sweep(listed, files)
    exact_sweep = sweep(exact_pairs(sim), files)
    originals = files.filter(pl.col("transform") == "original")["row"].to_numpy()
    src = files["source"].to_numpy()
    nn = [float(sim[r][src != src[r]].max()) for r in originals]
    nn_q = {q: float(np.quantile(nn, q)) for q in (0.05, 0.1, 0.5, 0.9)}

    report = ["# Calibration on real photographs\n",
              f"Built by `python benchmarks/calibrate_photos.py` (seed {args.seed}): {len(sources)} photographs "
              f"({', '.join(sorted({s.split('-')[0] for s in sources}))}), {files.height} images with the "
              f"planted copies; model `{model.spec().label}`, preprocess `{args.preprocess}`, default pipeline "
              "otherwise (HNSW32, k=10).\n",
              "## Similarity of a copy to its original\n", _md(copies),
              "\n## Hard negatives: different photographs of one subject\n", _md(hard),
              f"\nAll pairs of different photographs (the stereo pair left out): highest {negatives.max():.3f}, "
              f"99.9th percentile {np.quantile(negatives, 0.999):.3f}.\n",
              "\n## Per threshold, from the pipeline's own pairs (similarity.parquet)\n",
              "`precision`: listed pairs that join copies of one photograph; `image_recall`: images (all have a copy) "
              "with a copy found; components at `ccthreshold` = threshold: `images_in_mixed_components` (different "
              "photographs joined), `sources_split` (a photograph's copies in more than one component).\n",
              _md(knn_sweep),
              "\n## Per threshold, exact all-pairs similarities\n", _md(exact_sweep),
              f"\n## Nearest different photograph (outliers)\n\nSimilarity of each of the {len(nn)} photographs to "
              f"the nearest image of another photograph: 5th percentile {nn_q[0.05]:.3f}, 10th {nn_q[0.1]:.3f}, "
              f"median {nn_q[0.5]:.3f}, 90th {nn_q[0.9]:.3f}.\n"]
    best = best_threshold(knn_sweep)
    report.append(f"Best threshold at pair precision >= 0.98 (pipeline pairs): {best}\n")

    if args.fastdup_python:
        peer = fastdup_sweep(args.fastdup_python, images, args.root / "fastdup_work", files)
        report += ["\n## fastdup at its defaults (threshold 0.9, k=2), its similarity.csv\n",
                   _md(peer.filter(pl.col("threshold") == 0.9))]

    if not args.no_variants:
        embedder = Embedder(replace(model.spec(), preprocess="squash"))
        paths = files["path"].to_list()
        rows = []
        for name, prepare in _prepare_variants(embedder).items():
            emb = embed_variant(embedder, paths, prepare)
            s = emb @ emb.T
            p = _pair_frame(s, files)
            c = copy_table(s, files)
            b = best_threshold(sweep(exact_pairs(s), files))
            lowest = dict(zip(c["transform"], c["lowest"]))
            rows.append((name, 2 if "mirror" in name else 1, lowest["resize50"], lowest["crop10"], lowest["rotate"], lowest["watermark"],
                         float(c["p10"].min()), float(p.filter(pl.col("hard") & counted)["sim"].max()),
                         b.get("threshold", float("nan")), b.get("image_recall", float("nan")),
                         b.get("precision", float("nan"))))
            print(f"{name}: best {b}", flush=True)
        variants = pl.DataFrame(rows, orient="row", schema=[
            "preprocessing", "model runs per image", "lowest resize50", "lowest crop10", "lowest rotate", "lowest watermark",
            "lowest p10 of a transform", "highest hard negative", "best threshold (exact, precision>=0.98)",
            "image recall there", "precision there"])
        report += ["\n## Preprocessing variants (exact all-pairs, same files)\n", _md(variants)]

    text = "\n".join(report) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
