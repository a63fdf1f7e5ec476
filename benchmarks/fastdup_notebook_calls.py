"""Side by side: fastdup's public notebooks' calls against fastdup 2.54 and against ``dup_pipeline``.

    .venv/bin/python benchmarks/fastdup_notebook_calls.py [--fastdup-python /work/fastdup_venv/bin/python]

The calls follow fastdup's README, RUN.md and example notebooks (quick start, cleaning an image
dataset, finding and removing duplicates, analysing labelled and object-detection datasets, image
search, feature vectors) on the generated demo dataset (``dup_pipeline.core.demo``). Each
implementation runs them in its own process and folder (``import fastdup`` there is fastdup itself,
here ``import dup_pipeline as fastdup``), offline (``SENTRY_OPT_OUT=1 FASTDUP_PRODUCTION=1``,
``run_sentry=False``). A call is "ok" when it returns without raising, except the bad-argument
calls, which are "ok" when they raise (notebooks' ``try/except``). "Same columns": both ok and every
column fastdup returns (each table of a tuple) is among ours; results that are not tables compare
by kind (int, list, tuple, str, array). Prints one line per call, the totals, and the blur scale's
agreement (Spearman over the quick start's images, count below the tutorial's 50); ``--json``
writes the raw records. fastdup is never imported by this process.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# (name, code) pairs. ``result = ...`` is what is compared. Names in the namespace: fastdup, pd, np,
# os, IMPL ("fastdup" or "ours"), Q (a query image), D (the implementation's feature width).
CALLS: list[tuple[str, str]] = [
    # quick start / README (v1)
    ("create", "fd = fastdup.create(work_dir='w1', input_dir='demo/images/'); result = 0"),
    ("run", "result = fd.run(num_images=1000)"),
    ("summary", "result = fd.summary()"),
    ("vis.duplicates_gallery", "result = fd.vis.duplicates_gallery()"),
    ("vis.outliers_gallery", "result = fd.vis.outliers_gallery()"),
    ("vis.stats_gallery dark", "result = fd.vis.stats_gallery(metric='dark')"),
    ("vis.stats_gallery bright", "result = fd.vis.stats_gallery(metric='bright')"),
    ("vis.stats_gallery blur", "result = fd.vis.stats_gallery(metric='blur')"),
    ("vis.component_gallery", "result = fd.vis.component_gallery()"),
    ("vis.similarity_gallery", "result = fd.vis.similarity_gallery()"),
    ("invalid_instances", "result = fd.invalid_instances()"),
    ("outliers", "result = fd.outliers()"),
    ("similarity", "result = fd.similarity()"),
    ("img_stats", "result = fd.img_stats()"),
    ("connected_components", "result = fd.connected_components()"),
    ("annotations", "result = fd.annotations()"),
    ("num_instances", "result = fd.num_instances()"),
    ("embeddings", "result = fd.embeddings()"),
    ("config", "result = fd.config"),
    # cleaning an image dataset
    ("clean: broken list", "result = fd.invalid_instances()['filename'].to_list()"),
    ("clean: outliers < 0.68", "o = fd.outliers(); result = o[o.distance < 0.68].filename_outlier.tolist()"),
    ("clean: get_clusters", """
cc, _ = fd.connected_components()
agg = {'filename': 'unique', 'mean_distance': 'max', 'count': 'count'}
if 'label' in cc.columns:
    agg['label'] = list
cc = cc[cc['count'] >= 2]
result = cc.groupby('component_id').agg(agg).sort_values(by='count', ascending=False)
"""),
    ("clean: dark", "s = fd.img_stats(); result = s[s['mean'] < 13]"),
    ("clean: bright", "s = fd.img_stats(); result = s[s['mean'] > 220.5]"),
    ("clean: blurry", "s = fd.img_stats(); result = s[s['blur'] < 50]"),
    ("clean: blur < 50 count", "result = int((fd.img_stats()['blur'] < 50).sum())"),
    # finding and removing duplicates
    ("vis.duplicates_gallery num_images", "result = fd.vis.duplicates_gallery(num_images=5)"),
    ("vis.component_gallery num_images", "result = fd.vis.component_gallery(num_images=5)"),
    ("connected_components_grouped", "result = fd.connected_components_grouped()"),
    ("find_top_components", "top = fastdup.find_top_components('w1'); result = top"),
    ("delete_components dry_run", "result = fastdup.delete_components(top, dry_run=True)"),
    ("remove_duplicates dry_run", "result = fastdup.remove_duplicates('demo/images/train', work_dir='w_rd', dry_run=True)"),
    # labelled image classification
    ("labelled: create+run", """
df_annot = pd.read_csv('demo/labels.csv')
df_annot['filename'] = df_annot['filename'].apply(lambda x: 'demo/images/' + x)
fd2 = fastdup.create(work_dir='w2', input_dir='demo/images/')
result = fd2.run(annotations=df_annot, ccthreshold=0.9, threshold=0.8)
"""),
    ("labelled: img_stats", "result = fd2.img_stats()"),
    ("labelled: connected_components", "result = fd2.connected_components()"),
    ("labelled: similarity", "result = fd2.similarity()"),
    ("labelled: outliers", "result = fd2.outliers()"),
    ("labelled: summary", "result = fd2.summary()"),
    ("labelled: component_gallery slice", "result = fd2.vis.component_gallery(slice='beach')"),
    ("labelled: component_gallery slice diff", "result = fd2.vis.component_gallery(num_images=25, slice='diff')"),
    ("labelled: outliers_gallery", "result = fd2.vis.outliers_gallery(num_images=5)"),
    ("labelled: similarity_gallery", "result = fd2.vis.similarity_gallery()"),
    ("labelled: similarity_gallery diff", "result = fd2.vis.similarity_gallery(slice='diff')"),
    ("labelled: duplicates_gallery label_col", "result = fd2.vis.duplicates_gallery(label_col='label', num_images=5)"),
    ("labelled: stats_gallery slice", "result = fd2.vis.stats_gallery(metric='dark', slice='landscapes')"),
    ("labelled: component_gallery group_by label", "result = fd2.vis.component_gallery(group_by='label')"),
    ("labelled: component_gallery lazy_load max_width",
     "result = fd2.vis.component_gallery(lazy_load=True, max_width=900)"),
    ("labelled: duplicates_gallery get_label_func",
     "result = fd2.vis.duplicates_gallery(get_label_func=lambda f: os.path.basename(os.path.dirname(f)))"),
    # object detection
    ("od: run", """
rows = []
for f in sorted(pd.read_csv('demo/labels.csv')['filename'])[:20]:
    rows += [('demo/images/' + f, 10, 10, 100, 80, 'a'), ('demo/images/' + f, 120, 60, 90, 90, 'b')]
od = pd.DataFrame(rows, columns=['filename', 'col_x', 'row_y', 'width', 'height', 'label'])
od['split'] = 'train'
fd3 = fastdup.create(work_dir='w3', input_dir='.')
result = fd3.run(annotations=od, overwrite=True, num_images=10000)
"""),
    ("od: component_gallery metric size", "result = fd3.vis.component_gallery(metric='size', max_width=900)"),
    ("od: outliers_gallery", "result = fd3.vis.outliers_gallery()"),
    ("od: component_gallery slice diff", "result = fd3.vis.component_gallery(num_images=25, slice='diff')"),
    # image search and feature vectors
    ("fastdup.init_search", "result = fastdup.init_search(5, 'w1')"),
    ("fastdup.search", "result = fastdup.search(Q)"),
    ("fd.init_search", "result = fd.init_search(5)"),
    ("fd.search", "result = fd.search(Q)"),
    ("fd.feature_vector", "result = fd.feature_vector(Q)"),
    ("fd.feature_vectors", "result = fd.feature_vectors([Q, 'demo/images/train/flowers/flowers_000.jpg'])"),
    ("load_binary_feature", "files, mat = fastdup.load_binary_feature('w1/atrain_features.dat', d=D); result = (files, mat)"),
    ("save_binary_feature", "result = fastdup.save_binary_feature('w_sb', files, mat)"),
    ("generate_sprite_image", "result = fastdup.generate_sprite_image(files[:10], 10, 'w_sprite')"),
    # v0 API and fastdup's files
    ("v0 run", "result = fastdup.run('demo/images', work_dir='w0', nearest_neighbors_k=5, turi_param='ccthreshold=0.9')"),
    ("v0 similarity.csv", "result = pd.read_csv('w0/similarity.csv')"),
    ("v0 similarity.csv names", "result = pd.read_csv('w0/similarity.csv')['from'].dtype == object"),
    ("v0 outliers.csv", "result = pd.read_csv('w0/outliers.csv')"),
    ("v0 atrain_stats.csv", "result = pd.read_csv('w0/atrain_stats.csv')"),
    ("v0 atrain_features.dat.csv", "result = pd.read_csv('w0/atrain_features.dat.csv')"),
    ("v0 atrain_features.bad.csv", "result = pd.read_csv('w0/atrain_features.bad.csv')"),
    ("v0 component_info.csv", "result = pd.read_csv('w0/component_info.csv')"),
    ("v0 connected_components.csv", "result = pd.read_csv('w0/connected_components.csv')"),
    ("v0 nnf.index", "result = os.path.exists('w0/nnf.index')"),
    ("v0 load_binary_feature", "result = fastdup.load_binary_feature('w0/atrain_features.dat', d=D)"),
    ("v0 create_duplicates_gallery", "result = fastdup.create_duplicates_gallery('w0/similarity.csv', save_path='g0')"),
    ("v0 create_outliers_gallery", "result = fastdup.create_outliers_gallery('w0/outliers.csv', save_path='g0')"),
    ("v0 create_stats_gallery", "result = fastdup.create_stats_gallery('w0/atrain_stats.csv', save_path='g0', metric='blur')"),
    ("v0 create_components_gallery", "result = fastdup.create_components_gallery('w0', save_path='g0')"),
    ("v0 create_similarity_gallery", "result = fastdup.create_similarity_gallery('w0/similarity.csv', save_path='g0')"),
    # train/test
    ("v0 test_dir", "result = fastdup.run('demo/images/train', work_dir='w4', test_dir='demo/images/test')"),
    ("v0 test_dir similarity.csv", "result = pd.read_csv('w4/similarity.csv')"),
    ("v1 test_dir", "fd5 = fastdup.create(work_dir='w5', input_dir='demo/images/train'); result = fd5.run(test_dir='demo/images/test')"),
    ("v1 test_dir similarity", "result = fd5.similarity()"),
    # bad arguments raise (ok = raised)
    ("bad argument raises: threshold", "RAISES; fastdup.create(work_dir='w6', input_dir='demo/images').run(threshold='high')"),
    ("bad argument raises: turi_param", "RAISES; fastdup.create(work_dir='w7', input_dir='demo/images').run(turi_param='nnmodel=7')"),
    ("bad argument raises: missing input_dir", "RAISES; fastdup.create(work_dir='w8', input_dir='no/such/dir').run()"),
]


def _kind(value):
    """A JSON description of a result: columns of tables, else the kind."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return {"kind": "table", "columns": [str(c) for c in value.columns], "rows": len(value)}
    if isinstance(value, tuple):
        return {"kind": "tuple", "items": [_kind(v) for v in value]}
    if isinstance(value, (bool, np.bool_)):
        return {"kind": "bool", "value": bool(value)}
    if isinstance(value, (int, np.integer)):
        return {"kind": "int", "value": int(value)}
    if isinstance(value, np.ndarray):
        return {"kind": "array", "shape": list(value.shape)}
    return {"kind": type(value).__name__}


def child(impl: str, out: str) -> None:
    """Run every call in this process (cwd = a folder with ``demo`` in it) and write the records."""
    import contextlib
    import io
    import traceback

    import numpy as np
    import pandas as pd

    if impl == "fastdup":
        import fastdup
        from fastdup.fastdup_controller import FastdupController

        original = FastdupController.run

        def offline(self, *args, **kwargs):
            kwargs.setdefault("run_sentry", False)
            return original(self, *args, **kwargs)

        FastdupController.run = offline
        width = 576
    else:
        import dup_pipeline as fastdup

        width = 1280
    namespace = {"fastdup": fastdup, "pd": pd, "np": np, "os": os, "IMPL": impl, "D": width,
                 "Q": "demo/images/train/landscapes/landscapes_000.jpg"}
    records, blur = [], {}
    for name, code in CALLS:
        expect_raise = code.startswith("RAISES;")
        code = code.removeprefix("RAISES;")
        namespace.pop("result", None)
        record = {"name": name}
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(code, namespace)  # noqa: S102 - the calls above, nothing else
            result = namespace.get("result")
            failed = result is None or (isinstance(result, int) and not isinstance(result, bool) and result != 0
                                        and name.endswith(("run", "create+run", "test_dir")))
            record.update(ok=not expect_raise and not failed, result=_kind(result))
            if failed:
                record["error"] = f"returned {result!r}"
        except BaseException as exc:  # noqa: BLE001 - each call's failure is the measurement
            record.update(ok=expect_raise, error=f"{type(exc).__name__}: {str(exc)[:300]}")
            if not expect_raise:
                record["trace"] = traceback.format_exc(limit=-2)[-600:]
        records.append(record)
        if name == "img_stats" and record["ok"]:  # the quick start's blur per file, for the scale comparison
            stats = namespace["result"]  # (fastdup's feature_vector later overwrites its work_dir)
            blur = dict(zip(stats["filename"].astype(str), stats["blur"].astype(float)))
    Path(out).write_text(json.dumps({"records": records, "blur": blur}))


def _columns_match(theirs: dict, ours: dict) -> bool:
    if theirs["kind"] != ours["kind"]:
        return False
    if theirs["kind"] == "table":
        return set(theirs["columns"]) <= set(ours["columns"])
    if theirs["kind"] == "tuple":
        return len(theirs["items"]) == len(ours["items"]) and all(
            _columns_match(a, b) for a, b in zip(theirs["items"], ours["items"]))
    if theirs["kind"] == "bool":
        return theirs["value"] == ours["value"]
    return True


def _run(python: str, impl: str, folder: Path, demo: Path) -> list[dict]:
    folder.mkdir(parents=True)
    (folder / "demo").symlink_to(demo)
    out = folder / "records.json"
    env = {**os.environ, "SENTRY_OPT_OUT": "1", "FASTDUP_PRODUCTION": "1"}
    subprocess.run([python, os.path.abspath(__file__), "--child", impl, str(out)], cwd=folder, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    return json.loads(out.read_text())


def _blur_agreement(theirs: dict[str, float], ours: dict[str, float]) -> dict:
    """Spearman correlation of blur over the files both measured, and how many each flags below 50."""
    from scipy.stats import spearmanr

    common = sorted(set(theirs) & set(ours))
    a, b = [theirs[f] for f in common], [ours[f] for f in common]
    return {"files": len(common), "spearman": round(float(spearmanr(a, b).statistic), 3),
            "fastdup blur<50": sum(v < 50 for v in a), "ours blur<50": sum(v < 50 for v in b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fastdup-python", default="/work/fastdup_venv/bin/python")
    parser.add_argument("--json", help="write the raw records here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from dup_pipeline.core.demo import generate_demo

    with tempfile.TemporaryDirectory(prefix="fd_calls_") as tmp:
        demo = generate_demo(Path(tmp) / "demo").root
        fastdup_out = _run(args.fastdup_python, "fastdup", Path(tmp) / "fastdup", demo)
        ours_out = _run(sys.executable, "ours", Path(tmp) / "ours", demo)
    theirs, ours = fastdup_out["records"], ours_out["records"]
    totals = {"calls": len(CALLS), "fastdup ok": 0, "ours ok": 0, "same columns": 0}
    for a, b in zip(theirs, ours):
        same = a["ok"] and b["ok"] and ("result" not in a or _columns_match(a["result"], b["result"]))
        totals["fastdup ok"] += a["ok"]
        totals["ours ok"] += b["ok"]
        totals["same columns"] += same
        mark = "same" if same else ("DIFF" if a["ok"] and b["ok"] else "")
        print(f"{a['name'][:48]:48} fastdup={'ok' if a['ok'] else 'FAIL':4} ours={'ok' if b['ok'] else 'FAIL':4} {mark}"
              + ("" if b["ok"] else f"  ours: {b.get('error', '')[:110]}")
              + ("" if a["ok"] else f"  fastdup: {a.get('error', '')[:80]}"))
    print(json.dumps(totals))
    blur = _blur_agreement(fastdup_out["blur"], ours_out["blur"])
    print(json.dumps({"blur": blur}))
    if args.json:
        Path(args.json).write_text(json.dumps({"fastdup": theirs, "ours": ours, "totals": totals, "blur": blur},
                                              indent=1))


if __name__ == "__main__":
    main()
