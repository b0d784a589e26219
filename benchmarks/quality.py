"""Real-photo quality benchmark: `make quality` (about 60 min on 2 cores).

Runs the real `kedro run --params raw_dir=...` with default parameters on four photo trees, each in
its own scratch project under `build/quality/` (the repository's `data/` and `mlruns/` are not
touched):

- `fmnist10`: Fashion-MNIST (Debian's `dataset-fashion-mnist`, real Zalando catalog photos), one
  folder per fine class, 300 photos each;
- `fmnist-groups`: footwear / tops / other, 150 photos per fine class, the fine class as
  `substyles.csv`;
- `emojione`: colour drawings (Debian's `ruby-gemojione`), the package's categories, the Unicode
  subgroup as `substyles.csv`;
- `builtin`: the built-in generator, as `make run` draws it.

Writes `benchmarks/results/quality.json`, `docs/QUALITY.md` and one reconstruction and one query
picture per dataset under `docs/quality/`. `--mini` runs the same path on a few photos per class
with one epoch (the test suite does this, so the script cannot rot).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import emojione, fmnist
from benchmarks._report import machine
from jewelry_pipeline import QUIET_ENV

ROOT = Path(__file__).resolve().parents[1]
KEDRO = Path(sys.executable).with_name("kedro")
# Targets of the pretrained-encoder issue (#30): over the best baseline, pretrained ones included.
# The benchmark reports them, it never relaxes them.
CLASSIFIER_MARGIN = {"fmnist10": 0.01, "fmnist-groups": 0.01, "emojione": 0.01}
BUILTIN_MIN_ACCURACY = 0.97
RETRIEVAL_MARGIN = {"fmnist-groups": 0.02, "emojione": 0.02}
RETRIEVAL_BASELINES = ("pixels", "pca", "backbone")
CLUSTERING_BASELINES = ("kmeans_pixels", "pca_kmeans", "backbone_kmeans")
SERVED_CLUSTERS = "served_kmeans"  # recommender.cluster_method's default
BUILTIN_MIN_RETRIEVAL = 0.90
DATASETS = "fmnist10,fmnist-groups,emojione,builtin"
# "Not in our catalog" (#31): photos of another dataset, which neither the run nor its threshold
# saw, should be refused; the test split should not.
FOREIGN_SET = {
    "fmnist10": "builtin",
    "fmnist-groups": "builtin",
    "emojione": "fmnist10",
    "builtin": "fmnist10",
}
MIN_FOREIGN_REFUSED, MAX_TEST_REFUSED = 0.90, 0.05
MINI_PARAMS = (
    "classifier.training.epochs=1,autoencoders.training.epochs=1,"
    "ingestion.min_images_per_category=5,pretrained.input_size=32,"
    "pretrained.training.warmup_epochs=1,pretrained.training.fine_tune_epochs=1"
)


def ensure_fashion_mnist(data_dir: Path) -> None:
    """Install Debian's dataset-fashion-mnist when its files are missing (as `make test` does for
    Chromium)."""
    if (data_dir / "train-images-idx3-ubyte.gz").exists():
        return
    if data_dir != fmnist.DATA_DIR:
        sys.exit(f"No Fashion-MNIST files in {data_dir}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("Installing Debian's dataset-fashion-mnist", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run(
        [
            *sudo,
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-qq",
            "dataset-fashion-mnist",
        ],
        check=True,
    )


def ensure_emojione(gem_dir: Path, emoji_test: Path) -> None:
    """Install Debian's ruby-gemojione and unicode-data when their files are missing."""
    if (gem_dir / "config" / "index.json").exists() and emoji_test.exists():
        return
    if gem_dir != emojione.GEM_DIR or emoji_test != emojione.EMOJI_TEST:
        sys.exit(f"No EmojiOne files in {gem_dir} or no {emoji_test}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("Installing Debian's ruby-gemojione and unicode-data", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run(
        [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq"]
        + list(emojione.DEBIAN_PACKAGES),
        check=True,
    )


def build_photos(name: str, out: Path, mini: bool, args: argparse.Namespace) -> Path:
    """Write one dataset's photo tree (with substyles.csv) into `out`."""
    data_dir = args.fmnist_dir
    if out.exists():
        shutil.rmtree(out)
    if name == "emojione":
        return emojione.write_tree(
            out,
            max_per_category=12 if mini else None,
            gem_dir=args.emojione_dir,
            emoji_test=args.emoji_test,
            min_per_category=12 if mini else emojione.MIN_PER_CATEGORY,
        )
    if name == "fmnist10":
        return fmnist.write_tree(
            out, grouped=False, per_class=12 if mini else 300, data_dir=data_dir
        )
    if name == "fmnist-groups":
        return fmnist.write_tree(
            out, grouped=True, per_class=12 if mini else 150, data_dir=data_dir
        )
    from jewelry_pipeline.synth import generate_dataset

    generate_dataset(
        out,
        per_category=24 if mini else 500,
        seed=42,
        size=48 if mini else 128,
        workers=1 if mini else 2,
    )
    return out


def scratch_project(path: Path) -> Path:
    """A throw-away Kedro project with the repository's base configuration and nothing else."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", path / "pyproject.toml")
    shutil.copytree(ROOT / "conf" / "base", path / "conf" / "base")
    (path / "conf" / "local").mkdir()
    (path / "mlruns").mkdir()
    (path / "src").mkdir()  # Kedro wants it; the package is imported from the installed project
    return path


def run_kedro(project: Path, photos: Path, mini: bool) -> float:
    """`kedro run --params raw_dir=...` in `project`; returns wall seconds. The log goes to
    `project/kedro.log`."""
    params = f"raw_dir={photos}" + (f",{MINI_PARAMS}" if mini else "")
    env = {**os.environ, **QUIET_ENV, "BENTOML_HOME": str(project / "bentoml")}
    started = time.perf_counter()
    with open(project / "kedro.log", "w") as log:
        done = subprocess.run(
            [str(KEDRO), "run", "--params", params],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    seconds = time.perf_counter() - started
    if done.returncode:
        tail = (project / "kedro.log").read_text().splitlines()[-40:]
        raise RuntimeError(f"kedro run failed in {project}:\n" + "\n".join(tail))
    return seconds


def _last_run_metrics(project: Path) -> dict[str, float]:
    """Latest value of every metric of the project's most recent MLflow run."""
    with sqlite3.connect(project / "mlruns" / "mlflow.db") as db:
        (run_id,) = db.execute(
            "SELECT run_uuid FROM runs ORDER BY start_time DESC LIMIT 1"
        ).fetchone()
        rows = db.execute(
            "SELECT key, value FROM latest_metrics WHERE run_uuid = ?", (run_id,)
        ).fetchall()
    return dict(rows)


def foreign_photos(name: str, work: Path, count: int, args: argparse.Namespace) -> list[Path]:
    """`count` photos of `name`'s foreign set (`FOREIGN_SET`), written once under `work` (a folder
    per size, so a mini run's few photos never stand in for a full run's)."""
    kind = FOREIGN_SET[name]
    out = work / f"foreign-{kind}-{count}"
    if not out.exists():
        if kind == "fmnist10":
            per_class = max(2, count // 10)  # ten classes
            fmnist.write_tree(
                out, grouped=False, per_class=per_class, seed=7, data_dir=args.fmnist_dir
            )
        else:
            from jewelry_pipeline.synth import generate_dataset

            generate_dataset(out, per_category=max(2, count // 4), seed=9, size=128, workers=1)
    files = sorted(p for p in out.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    return files[:: max(1, len(files) // count)][:count]


def not_in_catalog(project: Path, files: list[Path]) -> float:
    """The share of `files` the run's bundle answers "not in our catalog" (no close match), each
    uploaded as the service takes a photo."""
    from jewelry_pipeline.core.bundle import read_bundle
    from jewelry_pipeline.serving.engine import RecommendationEngine

    engine = RecommendationEngine(read_bundle(project / "data/07_model_output/bundle"), "quality")
    refused = [
        not engine.recommend(engine.features(engine.prepare(f.read_bytes())[None]), k=1)[
            "close_match"
        ]
        for f in files
    ]
    return float(np.mean(refused))


def collect(name: str, project: Path, seconds: float) -> dict:
    """One dataset's figures from the outputs of its run."""
    from jewelry_pipeline.core.lookup import read_table

    data = project / "data"
    classifier = json.loads((data / "08_reporting" / "classifier_metrics.json").read_text())
    clustering = read_table(data / "08_reporting" / "clustering_metrics.csv")
    retrieval = read_table(data / "08_reporting" / "retrieval.csv")
    choice = json.loads((data / "05_model_input" / "autoencoder_input.json").read_text())
    metrics = _last_run_metrics(project)
    categories = sorted(clustering["category"].unique())
    reconstruction = {
        c: {
            "heldout_mse": metrics.get(f"autoencoder.{c}.heldout_reconstruction_mse"),
            "mean_image_mse": metrics.get(f"autoencoder.{c}.heldout_mean_image_mse"),
        }
        for c in categories
    }
    served = json.loads((data / "07_model_output" / "served_source.json").read_text())
    answers = json.loads((data / "07_model_output" / "answer_policy.json").read_text())
    choice_path = data / "08_reporting" / "classifier_choice.json"
    truths = true_substyles(project)
    return {
        "classifier_choice": json.loads(choice_path.read_text()) if choice_path.exists() else {},
        "ari_at_true_k": ari_at_true_k(project, truths),
        "without_substyle_structure": sorted(
            category for category, labels in truths.items() if not has_substyle_structure(*labels)
        ),
        "dataset": name,
        "wall_seconds": round(seconds, 1),
        "photos": len(read_table(data / "03_primary" / "manifest.csv")),
        "autoencoder_input": choice,
        "classifier": classifier,
        "clustering": clustering.to_dict("records"),
        "retrieval": retrieval.to_dict("records"),
        "served_source": served["source"],
        "served_source_reason": served["reason"],
        "reconstruction": reconstruction,
        "answers": answers,
    }


def true_substyles(project: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per category: its item ids and their true sub-styles ({} when the photos carry none)."""
    from jewelry_pipeline.core.lookup import read_table

    labels_path = project.parent / "photos" / "substyles.csv"  # beside the project: build_photos
    if not labels_path.exists():
        return {}
    labels = read_table(labels_path)
    truth = dict(zip(labels["path"], labels["substyle"]))
    manifest = read_table(project / "data" / "05_model_input" / "manifest.csv")
    return {
        str(category): (
            rows["item_id"].to_numpy().astype(str),
            rows["path"].map(truth).to_numpy(),
        )
        for category, rows in manifest.groupby("category")
    }


def has_substyle_structure(ids: np.ndarray, true: np.ndarray) -> bool:
    """Whether ARI can tell partitions of a category apart: it has at least two true sub-styles,
    and fewer than items (one sub-style, or one per item, scores every partition alike)."""
    return 2 <= len(set(true)) < len(ids)


def ari_at_true_k(
    project: Path, truths: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, dict[str, float]]:
    """Per category: the ARI of KMeans at the true number of sub-styles on the served clusters'
    space (the served embedding), the autoencoder latents and the frozen backbone features (labels
    used here only); `truths` as `true_substyles` reads them."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from jewelry_pipeline.core.lookup import aligned
    from jewelry_pipeline.core.search import l2_normalise

    data = project / "data"
    if not truths:
        return {}
    frozen_path = data / "04_feature" / "backbone_features.npz"
    with np.load(frozen_path, allow_pickle=False) as arrays:
        frozen = {key: arrays[key] for key in arrays.files}
    with np.load(data / "04_feature" / "embedding_sources.npz", allow_pickle=False) as arrays:
        served_source = json.loads((data / "07_model_output" / "served_source.json").read_text())
        served = {key: arrays[key] for key in ("item_id", served_source["source"])}
    found = {}
    for category, (ids, true) in truths.items():
        k = len(set(true))
        if not has_substyle_structure(ids, true):
            continue
        with np.load(data / "04_feature" / "latents" / f"{category}.npz", allow_pickle=False) as a:
            latents = {key: a[key] for key in a.files}
        spaces = {
            SERVED_CLUSTERS: l2_normalise(
                aligned(ids, served, served_source["source"]).astype(np.float32)
            ),
            "ae_kmeans": l2_normalise(aligned(ids, latents, "latents")),
        }
        if len(frozen["features"]):
            spaces["backbone_kmeans"] = l2_normalise(aligned(ids, frozen, "features"))
        found[str(category)] = {
            method: float(
                adjusted_rand_score(true, KMeans(k, n_init=10, random_state=0).fit_predict(x))
            )
            for method, x in spaces.items()
        }
    return found


def scripted_edits(project: Path) -> dict[str, dict]:
    """Per labelled category, the served sub-styles' ARI before and after the edits of a
    merchandiser who knows the styles (#33), made with the service's own edit code on the run's
    bundle: set k to the true number of sub-styles, then the one merge or split (into 2) that
    brings the clusters nearest the truth (labels used here only)."""
    from sklearn.metrics import adjusted_rand_score

    from jewelry_pipeline.core.bundle import CATALOG_FILE, index_vectors
    from jewelry_pipeline.core.lookup import read_table
    from jewelry_pipeline.core.substyles import (
        PREVIEW_K,
        PREVIEW_SEED,
        EditRefused,
        SubstyleCatalog,
    )

    labels_path = project.parent / "photos" / "substyles.csv"
    if not labels_path.exists():
        return {}
    bundle = (project / "data" / "07_model_output" / "bundle").resolve()
    catalog = read_table(bundle / CATALOG_FILE)
    labels = read_table(labels_path)
    truth = catalog["path"].map(dict(zip(labels["path"], labels["substyle"])))
    served = SubstyleCatalog(catalog, np.asarray(index_vectors(bundle)), {}, PREVIEW_SEED)
    found = {}
    for category in sorted(catalog["category"].unique()):
        rows = (catalog["category"] == category).to_numpy()
        true = truth[rows].to_numpy()
        k = len(set(true))
        if k < 2 or pd.isna(true).any():
            continue

        def ari(edited: SubstyleCatalog, rows=rows, true=true) -> float:
            return float(adjusted_rand_score(true, edited.catalog["cluster"].to_numpy()[rows]))

        k_set = min(k, PREVIEW_K[1])  # the most sub-styles an edit may ask for
        served_k = len(set(catalog["cluster"].to_numpy()[rows].tolist()))
        at_k = (  # no set k when the served k is already that k (set k would re-cluster)
            served
            if served_k == k_set
            else served.apply([{"op": "set_k", "category": category, "k": k_set}])
        )
        clusters = sorted(set(at_k.catalog["cluster"].to_numpy()[rows].tolist()))
        candidates = [
            {"op": "merge", "category": category, "cluster": a, "into": b}
            for i, b in enumerate(clusters)
            for a in clusters[i + 1 :]
        ] + [{"op": "split", "category": category, "cluster": c, "parts": 2} for c in clusters]
        scored = []
        for edit in candidates:
            try:
                scored.append((ari(at_k.apply([edit])), edit))
            except EditRefused:  # a one-item sub-style cannot split
                continue
        best, edit = max(scored, key=lambda pair: pair[0], default=(-1.0, None))
        helps = edit is not None and best > ari(at_k)
        found[str(category)] = {
            "true_k": k,
            "k_set": k_set,
            "served_k": served_k,
            "ari_served": ari(served),
            "ari_set_k": ari(at_k),
            "ari_after": best if helps else ari(at_k),
            "edit": (
                f"{edit['op']} {edit['cluster']}"
                + (f" into {edit['into']}" if edit["op"] == "merge" else " in 2")
                if helps
                else "none helps"
            ),
        }
    return found


def targets(result: dict) -> list[dict]:
    """Each target of the issue that applies to this dataset, with its figures and whether it is
    met."""
    name, found = result["dataset"], []
    accuracy = result["classifier"]["test_accuracy"]
    baseline = result["classifier"]["baseline_test_accuracy"]
    if name in CLASSIFIER_MARGIN:
        need = baseline + CLASSIFIER_MARGIN[name]
        found.append(
            {
                "target": (
                    f"classifier accuracy >= best baseline (frozen features included) + "
                    f"{CLASSIFIER_MARGIN[name]}"
                ),
                "value": accuracy,
                "needed": need,
                "met": accuracy >= need,
            }
        )
    else:
        found.append(
            {
                "target": f"classifier accuracy >= {BUILTIN_MIN_ACCURACY}",
                "value": accuracy,
                "needed": BUILTIN_MIN_ACCURACY,
                "met": accuracy >= BUILTIN_MIN_ACCURACY,
            }
        )
    retrieval = {r["source"]: r for r in result["retrieval"]}
    key = "precision_at_10.substyle"
    if key in retrieval.get(result["served_source"], {}):
        served = retrieval[result["served_source"]][key]
        if name in RETRIEVAL_MARGIN:
            baselines = [s for s in RETRIEVAL_BASELINES if s in retrieval]
            need = max(retrieval[s][key] for s in baselines) + RETRIEVAL_MARGIN[name]
            found.append(
                {
                    "target": (
                        f"served source sub-style p@10 >= max({', '.join(baselines)}) + "
                        f"{RETRIEVAL_MARGIN[name]}"
                    ),
                    "value": served,
                    "needed": need,
                    "met": served >= need,
                }
            )
        elif name == "builtin":
            found.append(
                {
                    "target": f"served source sub-style p@10 >= {BUILTIN_MIN_RETRIEVAL}",
                    "value": served,
                    "needed": BUILTIN_MIN_RETRIEVAL,
                    "met": served >= BUILTIN_MIN_RETRIEVAL,
                }
            )
    clustering = pd.DataFrame(result["clustering"])
    if name != "fmnist10" and "ari" in clustering:
        for category, rows in clustering.groupby("category"):
            if category in result.get("without_substyle_structure", []):
                continue  # every partition scores alike: no target to meet or miss
            ari = rows.set_index("method")["ari"]
            baselines = [m for m in CLUSTERING_BASELINES if m in ari]
            need = max(ari[m] for m in baselines)
            found.append(
                {
                    "target": f"{SERVED_CLUSTERS} ARI >= every clustering baseline ({category})",
                    "value": ari[SERVED_CLUSTERS],
                    "needed": need,
                    "met": ari[SERVED_CLUSTERS] >= need,
                }
            )
    after = result.get("answers", {}).get("test", {}).get("after")
    if "foreign_refused" in result and after is not None:
        found.append(
            {
                "target": f"not in our catalog: unseen {FOREIGN_SET[name]} photos refused",
                "value": result["foreign_refused"],
                "needed": MIN_FOREIGN_REFUSED,
                "met": result["foreign_refused"] >= MIN_FOREIGN_REFUSED,
            }
        )
        refused = after["no_close_match_rate"]
        found.append(
            {
                "target": "not in our catalog: test photos refused at most",
                "value": refused,
                "needed": MAX_TEST_REFUSED,
                "met": refused <= MAX_TEST_REFUSED,
            }
        )
    for category, figures in result["reconstruction"].items():
        if figures["heldout_mse"] is not None:
            found.append(
                {
                    "target": f"held-out reconstruction MSE < mean image ({category})",
                    "value": figures["heldout_mse"],
                    "needed": figures["mean_image_mse"],
                    "met": figures["heldout_mse"] < figures["mean_image_mse"],
                }
            )
    return found


def query_picture(project: Path, out: Path, k: int = 5, queries: int = 4) -> None:
    """A few test photos, each followed by its top-k gallery results from the served index (within
    the photo's category when scoped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jewelry_pipeline.core.lookup import read_table
    from jewelry_pipeline.core.search import EmbeddingIndex

    data = project / "data"
    with np.load(data / "07_model_output" / "index.npz", allow_pickle=False) as arrays:
        index_arrays = {key: arrays[key] for key in arrays.files}
    index = EmbeddingIndex.from_arrays(index_arrays)
    catalog = (
        read_table(data / "07_model_output" / "catalog.csv")
        .set_index("item_id")
        .loc[index.item_ids]
        .reset_index()
    )
    images = np.load(data / "03_primary" / "image_store.npy", mmap_mode="r", allow_pickle=False)
    scoped = bool(index_arrays.get("category_scoped", False))
    rng = np.random.default_rng(0)
    test = np.flatnonzero(catalog["split"].to_numpy() == "test")
    chosen = rng.choice(test, min(queries, len(test)), replace=False) if len(test) else []
    figure, axes = plt.subplots(
        len(chosen), k + 1, figsize=(1.6 * (k + 1), 1.8 * max(1, len(chosen))), squeeze=False
    )
    gallery = catalog["split"].isin(["train", "val"]).to_numpy()
    for row, position in enumerate(chosen):
        allowed = (
            gallery & (catalog["category"].to_numpy() == catalog.at[position, "category"])
            if scoped
            else gallery
        )
        found, scores = index.search(index.vectors[position], k, allowed=allowed)
        tiles = [(position, "query")] + [(p, f"{s:.2f}") for p, s in zip(found[0], scores[0])]
        for column, (item, caption) in enumerate(tiles):
            axes[row, column].imshow(images[int(catalog.at[item, "store_index"])])
            axes[row, column].set_title(caption, fontsize=7)
            axes[row, column].axis("off")
    figure.suptitle("test photo (left) and its top results from the served index", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def report(results: list[dict], total_seconds: float) -> str:
    """docs/QUALITY.md from the results of one benchmark run."""
    lines = [
        "# Quality on real photos",
        "",
        "Generated by `make quality` (`benchmarks/quality.py`) from one run; do not edit by hand. "
        "Every dataset runs",
        "the real `kedro run --params raw_dir=...` with the default parameters in a scratch "
        "project. Sub-style labels",
        "(`substyles.csv`) are used only here, for evaluation.",
        "",
        f"Total wall time {total_seconds / 60:.1f} min on {machine()['cpus']} CPUs.",
        "",
        "## Targets",
        "",
        "| dataset | target | value | needed | met |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        for target in result["targets"]:
            lines.append(
                f"| {result['dataset']} | {target['target']} | {_fmt(target['value'])} "
                f"| {_fmt(target['needed'])} | {'yes' if target['met'] else '**no**'} |"
            )
    for result in results:
        classifier = result["classifier"]
        lines += [
            "",
            f"## {result['dataset']}",
            "",
            f"{result['photos']} photos, wall time {result['wall_seconds'] / 60:.1f} min. "
            f"Autoencoder input: **{result['autoencoder_input']['input']}** "
            f"({result['autoencoder_input']['reason']}).",
            "",
            f"Classifier kept: **{result['classifier_choice'].get('chosen', 'cnn')}** "
            f"({result['classifier_choice'].get('reason', '')}).",
            "",
            "| classifier | test accuracy | test macro-F1 |",
            "|---|---|---|",
            f"| kept classifier | {classifier['test_accuracy']:.3f} "
            f"| {classifier['test_macro_f1']:.3f} |",
            "| baseline: PCA + logistic regression "
            f"| {classifier.get('baseline_pca_logistic_test_accuracy', float('nan')):.3f} | |",
            "| baseline: logistic regression on pixels "
            f"| {classifier.get('baseline_pixel_logistic_test_accuracy', float('nan')):.3f} | |",
            "| baseline: logistic regression on frozen pretrained features "
            f"| {classifier.get('baseline_frozen_logistic_test_accuracy', float('nan')):.3f} | |",
            "",
        ]
        clustering = pd.DataFrame(result["clustering"])
        columns = [
            c for c in ("category", "method", "k", "ari", "nmi", "silhouette") if c in clustering
        ]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += [
            "| " + " | ".join(_fmt(row[c]) for c in columns) + " |"
            for row in clustering.to_dict("records")
        ]
        if result.get("without_substyle_structure"):
            lines += [
                "",
                "No ARI target for "
                + ", ".join(result["without_substyle_structure"])
                + ": a category with a single true sub-style (or one per item) gives every "
                "partition the same ARI.",
            ]
        if result["ari_at_true_k"]:
            methods = sorted({m for v in result["ari_at_true_k"].values() for m in v})
            lines += [
                "",
                "ARI at the true number of sub-styles (KMeans, for reference; the runs choose k "
                "without labels):",
                "",
                "| category | " + " | ".join(methods) + " |",
                "|" + "---|" * (len(methods) + 1),
            ]
            lines += [
                f"| {category} | " + " | ".join(_fmt(v.get(m, "")) for m in methods) + " |"
                for category, v in result["ari_at_true_k"].items()
            ]
        if result.get("scripted_edits"):
            lines += [
                "",
                "Sub-style edits toward the truth (#33): the served sub-styles' ARI, then after "
                "setting k to the true number of sub-styles (skipped when the served k is that "
                "k), then after the one merge or split that helps most (the service's edit code "
                "on this run's bundle; labels pick the edits, as a merchandiser who knows the "
                "styles would):",
                "",
                "| category | served k | ARI served | true k | ARI after set k | then "
                "| ARI after |",
                "|---|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {category} | {e['served_k']} | {e['ari_served']:.3f} | {e['true_k']}"
                + (
                    f" (set {e['k_set']}: the most an edit asks)"
                    if e["k_set"] != e["true_k"]
                    else ""
                )
                + f" | {e['ari_set_k']:.3f} | {e['edit']} | {e['ari_after']:.3f} |"
                for category, e in result["scripted_edits"].items()
            ]
        retrieval = pd.DataFrame(result["retrieval"])
        columns = [
            c
            for c in (
                "source",
                "precision_at_10.category",
                "precision_at_10.substyle",
                "map_at_10.substyle",
            )
            if c in retrieval
        ]
        lines += [
            "",
            "Retrieval (test photos query the train+val gallery). "
            f"Served source: **{result['served_source']}** ({result['served_source_reason']}).",
            "",
        ]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += [
            "| " + " | ".join(_fmt(row[c]) for c in columns) + " |"
            for row in retrieval.to_dict("records")
        ]
        answers = result["answers"]
        lines += [
            "",
            "Answers to test photos (searching train+val photos) without and with the thresholds "
            f"chosen on validation: not sure below confidence {answers['min_confidence']:.3f}, "
            f"not in our catalog below familiarity {answers['min_familiarity']:.3f} (mean cosine "
            "to the nearest training photos in the classifier's pooled features).",
            "",
            "| answers | top result of the true category | marked not sure | not in our catalog |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {when} | {rates['top_result_category_rate']:.3f} | {rates['uncertain_rate']:.3f} "
            f"| {rates['no_close_match_rate']:.3f} |"
            for when, rates in answers["test"].items()
        ]
        lines += [
            "",
            f"![reconstructions](quality/{result['dataset']}_reconstructions.png)",
            "",
            f"![queries](quality/{result['dataset']}_queries.png)",
        ]
    return "\n".join(lines) + "\n"


def rescore_edits(results: Path, work: Path, docs: Path) -> dict:
    """The scripted sub-style edits of every dataset of a finished run, scored on the bundles its
    projects under `work` still hold; the run's other figures are kept as they were."""
    summary = json.loads(results.read_text())
    for result in summary["datasets"]:
        project = work / result["dataset"] / "project"
        if not (project / "data" / "07_model_output" / "bundle").exists():
            raise FileNotFoundError(
                f"{project} no longer holds the run's bundle: run the benchmark"
            )
        result["scripted_edits"] = scripted_edits(project)
    results.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    (docs / "QUALITY.md").write_text(report(summary["datasets"], summary["total_seconds"]))
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mini", action="store_true", help="a few photos per class and one epoch (for the tests)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "build" / "quality",
        help="scratch folder for photos and projects",
    )
    parser.add_argument(
        "--docs", type=Path, default=ROOT / "docs", help="where QUALITY.md and its pictures go"
    )
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json"
    )
    parser.add_argument(
        "--fmnist-dir",
        type=Path,
        default=fmnist.DATA_DIR,
        help="folder of the Fashion-MNIST IDX files",
    )
    parser.add_argument(
        "--emojione-dir", type=Path, default=emojione.GEM_DIR, help="the gemojione gem's folder"
    )
    parser.add_argument(
        "--emoji-test", type=Path, default=emojione.EMOJI_TEST, help="Unicode's emoji-test.txt"
    )
    parser.add_argument("--datasets", default=DATASETS)
    parser.add_argument(
        "--edits-only",
        action="store_true",
        help="no runs: score the scripted sub-style edits on the projects kept under --work by the "
        "run in --results, and rewrite it and QUALITY.md",
    )
    args = parser.parse_args(argv)
    if args.edits_only:
        return rescore_edits(args.results, args.work, args.docs)
    ensure_fashion_mnist(args.fmnist_dir)  # the datasets' own, or the foreign photos of others
    if "emojione" in args.datasets.split(","):
        ensure_emojione(args.emojione_dir, args.emoji_test)
    started, results = time.perf_counter(), []
    for name in args.datasets.split(","):
        print(f"[quality] {name}: building photos", flush=True)
        photos = build_photos(name, args.work / name / "photos", args.mini, args)
        project = scratch_project(args.work / name / "project")
        print(f"[quality] {name}: kedro run", flush=True)
        seconds = run_kedro(project, photos, args.mini)
        result = collect(name, project, seconds)
        result["scripted_edits"] = scripted_edits(project)
        foreign = foreign_photos(name, args.work, 20 if args.mini else 200, args)
        result["foreign_refused"] = not_in_catalog(project, foreign)
        result["targets"] = targets(result)
        pictures = args.docs / "quality"
        pictures.mkdir(parents=True, exist_ok=True)
        first = sorted(
            (project / "data" / "08_reporting" / "autoencoders").glob("*_reconstructions.png")
        )[0]
        shutil.copy(first, pictures / f"{name}_reconstructions.png")
        query_picture(project, pictures / f"{name}_queries.png")
        results.append(result)
        met = sum(t["met"] for t in result["targets"])
        print(
            f"[quality] {name}: {seconds / 60:.1f} min, "
            f"{met} of {len(result['targets'])} targets met",
            flush=True,
        )
    total = time.perf_counter() - started
    summary = {
        "benchmark": "quality",
        "mini": args.mini,
        "total_seconds": round(total, 1),
        "machine": machine(),
        "datasets": results,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    (args.docs / "QUALITY.md").write_text(report(results, total))
    return summary


if __name__ == "__main__":
    main()
