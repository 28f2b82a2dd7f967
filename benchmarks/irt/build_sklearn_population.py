"""Build a response matrix of real models: scikit-learn classifiers on bundled data sets.

Each "model" is one classifier family + hyper-parameters + training-set fraction + label
noise + feature subset, trained on each task's training split; its per-item correctness on
the tasks' test items forms one row of a long table (docs/formats.md). Tasks: digits,
digits shifted by one pixel, digits with pixel noise (both scored by the digits model),
breast_cancer, wine, iris — about 3000 items. Nothing is downloaded.

    nice -n 10 .venv/bin/python benchmarks/irt/build_sklearn_population.py \
        --models 320 --out benchmarks/irt/data/sklearn_population.csv
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

FAMILIES = ("logreg", "svc", "knn", "tree", "forest", "extra", "gnb", "mlp", "lda", "ridge",
            "sgd", "hgb")


def _shift(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(images)
    for k, img in enumerate(images.reshape(-1, 8, 8)):
        dy, dx = rng.choice([-1, 0, 1], size=2)
        if dy == 0 and dx == 0:
            dx = 1
        out[k] = np.roll(np.roll(img, dy, axis=0), dx, axis=1).ravel()
    return out


def load_tasks(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Train/test splits per base task; derived digits tasks share the digits training set."""
    rng = np.random.default_rng(seed)
    tasks = {}
    for name, loader, test_size in (("digits", datasets.load_digits, 0.5),
                                    ("breast_cancer", datasets.load_breast_cancer, 0.4),
                                    ("wine", datasets.load_wine, 0.4),
                                    ("iris", datasets.load_iris, 0.4)):
        x, y = loader(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=y)
        tasks[name] = {"x_train": x_train, "y_train": y_train,
                       "tests": {name: (x_test, y_test)}}
    x_test, y_test = tasks["digits"]["tests"]["digits"]
    tasks["digits"]["tests"]["digits_shifted"] = (_shift(x_test, rng), y_test)
    noisy = np.clip(x_test + rng.normal(0, 4.0, x_test.shape), 0, 16)
    tasks["digits"]["tests"]["digits_noisy"] = (noisy, y_test)
    return tasks


def sample_config(rng: np.random.Generator, index: int) -> dict[str, object]:
    family = FAMILIES[index % len(FAMILIES)]
    return {
        "family": family,
        "train_fraction": float(np.exp(rng.uniform(np.log(0.04), 0.0))),
        "label_noise": float(rng.choice([0.0, 0.0, rng.uniform(0.0, 0.35)])),
        "feature_fraction": float(rng.choice([1.0, rng.uniform(0.25, 1.0)])),
        "scale": bool(rng.random() < 0.7),
        "c": float(np.exp(rng.uniform(np.log(1e-3), np.log(1e2)))),
        "k": int(rng.integers(1, 40)),
        "depth": int(rng.integers(1, 14)),
        "trees": int(rng.integers(5, 80)),
        "hidden": int(rng.choice([4, 8, 16, 32, 64])),
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def make_classifier(cfg: dict[str, object], n_train: int) -> object:
    f, c, seed = cfg["family"], cfg["c"], cfg["seed"]
    if f == "logreg":
        clf = LogisticRegression(C=c, max_iter=300)
    elif f == "svc":
        clf = SVC(C=c, gamma="scale")
    elif f == "knn":
        clf = KNeighborsClassifier(n_neighbors=min(cfg["k"], n_train))
    elif f == "tree":
        clf = DecisionTreeClassifier(max_depth=cfg["depth"], random_state=seed)
    elif f == "forest":
        clf = RandomForestClassifier(n_estimators=cfg["trees"], max_depth=cfg["depth"],
                                     random_state=seed, n_jobs=1)
    elif f == "extra":
        clf = ExtraTreesClassifier(n_estimators=cfg["trees"], max_depth=cfg["depth"],
                                   random_state=seed, n_jobs=1)
    elif f == "gnb":
        clf = GaussianNB(var_smoothing=float(c) * 1e-3)
    elif f == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(cfg["hidden"],), alpha=float(c) * 1e-2,
                            max_iter=200, random_state=seed)
    elif f == "lda":
        clf = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=min(1.0, float(c) / 100))
    elif f == "ridge":
        clf = RidgeClassifier(alpha=1.0 / float(c))
    elif f == "sgd":
        clf = SGDClassifier(alpha=float(c) * 1e-3, max_iter=50, random_state=seed)
    else:
        clf = HistGradientBoostingClassifier(max_depth=cfg["depth"], max_iter=cfg["trees"],
                                             random_state=seed)
    return make_pipeline(StandardScaler(), clf) if cfg["scale"] else clf


def correctness(cfg: dict[str, object], task: dict[str, object]) -> dict[str, np.ndarray]:
    """Train one configuration on one base task; correctness on each of its test sets."""
    rng = np.random.default_rng(cfg["seed"])
    x, y = task["x_train"], task["y_train"].copy()
    n = max(int(round(cfg["train_fraction"] * len(y))), 2 * len(np.unique(y)) + 2)
    rows = rng.choice(len(y), size=min(n, len(y)), replace=False)
    # keep every class present so predict() covers all labels
    for label in np.unique(y):
        if label not in y[rows]:
            rows = np.append(rows, np.flatnonzero(y == label)[0])
    x_fit, y_fit = x[rows], y[rows].copy()
    noisy = rng.random(len(y_fit)) < cfg["label_noise"]
    y_fit[noisy] = rng.choice(np.unique(y), size=noisy.sum())
    n_features = x.shape[1]
    keep = np.sort(rng.choice(n_features, size=max(2, int(cfg["feature_fraction"] * n_features)),
                              replace=False))
    clf = make_classifier(cfg, len(y_fit))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        clf.fit(x_fit[:, keep], y_fit)
        return {name: (clf.predict(xt[:, keep]) == yt).astype(float)
                for name, (xt, yt) in task["tests"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/irt/data/"
                                                         "sklearn_population.csv"))
    args = parser.parse_args()
    tasks = load_tasks(args.seed)
    rng = np.random.default_rng(args.seed)
    frames, meta = [], []
    started = time.perf_counter()
    for index in range(args.models):
        cfg = sample_config(rng, index)
        name = f"{cfg['family']}-{index:03d}"
        for task in tasks.values():
            for test_name, correct in correctness(cfg, task).items():
                frames.append(pd.DataFrame({"model": name, "task": test_name,
                                            "item": np.arange(correct.size), "score": correct}))
        meta.append({"model": name, **cfg})
        if (index + 1) % 40 == 0:
            print(f"{index + 1} models, {time.perf_counter() - started:.0f} s", flush=True)
    table = pd.concat(frames, ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table[["model", "item", "score", "task"]].to_csv(args.out, index=False)
    pd.DataFrame(meta).to_csv(args.out.with_name(args.out.stem + "_models.csv"), index=False)
    acc = table.groupby("model")["score"].mean()
    print(f"wrote {args.out}: {acc.size} models × {table.groupby(['task', 'item']).ngroups} "
          f"items; accuracy {acc.min():.3f}–{acc.max():.3f} (median {acc.median():.3f}); "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
