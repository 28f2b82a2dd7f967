"""Fidelity of the estimators on held-out real models (what `merge3 irt validate` reports).

Protocol of tinyBenchmarks (Polo et al. 2024, §4) and IRT.md: calibrate on training
models, select k anchors, estimate each held-out model's accuracy from its anchor
responses, and report MAE (percentage points) and Spearman / Kendall rank correlations,
averaged over seeds, for every estimator × selector × k. Two splits: random held-out
models, and the strongest models held out (extrapolation — what an evolutionary search
produces, MERGE³). Recalibration: half of the strongest models are added to the bank
(as a search would add fully evaluated merges) and the other half is estimated again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from irt.anchors import SELECTORS, select_anchors
from irt.bank import ItemBank
from irt.calibrate import DEFAULT_ENGINE, ENGINES, calibrate, recalibrate
from irt.estimators import ESTIMATORS, AnchorEstimator
from irt.responses import ResponseMatrix

__all__ = ["ValidationConfig", "validate", "split_models", "score_estimates"]


@dataclass(frozen=True)
class ValidationConfig:
    ks: tuple[int, ...] = (10, 20, 50, 100)
    # every registered selector and estimator, plug-ins registered before this runs included
    selectors: tuple[str, ...] = field(default_factory=SELECTORS.names)
    estimators: tuple[str, ...] = field(default_factory=ESTIMATORS.names)
    seeds: tuple[int, ...] = (0, 1, 2)
    heldout_fraction: float = 0.2
    model: str = "mirt"
    dims: int | None = None
    engine: str = DEFAULT_ENGINE
    epochs: int = 2000
    recalibration: bool = True
    splits: tuple[str, ...] = ("random", "strongest")
    extra: dict[str, object] = field(default_factory=dict)


def split_models(accuracy: np.ndarray, kind: str, fraction: float, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): random, or the strongest ``fraction`` of models as test."""
    n = accuracy.size
    n_test = max(2, int(round(fraction * n)))
    if kind == "random":
        order = np.random.default_rng(seed).permutation(n)
    elif kind == "strongest":
        order = np.argsort(-accuracy, kind="stable")
    else:
        raise ValueError(f"unknown split {kind!r}")
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def score_estimates(estimate: np.ndarray, stderr: np.ndarray, truth: np.ndarray
                    ) -> dict[str, float]:
    """MAE (pp), Spearman, Kendall, mean s.e. (pp) and 95% interval coverage."""
    from scipy.stats import kendalltau, spearmanr

    constant = np.ptp(estimate) == 0 or np.ptp(truth) == 0
    return {
        "mae_pp": 100 * float(np.mean(np.abs(estimate - truth))),
        "spearman": float("nan") if constant else float(spearmanr(estimate, truth)[0]),
        "kendall": float("nan") if constant else float(kendalltau(estimate, truth)[0]),
        "stderr_pp": 100 * float(np.mean(stderr)),
        "coverage95": float(np.mean(np.abs(estimate - truth) <= 1.96 * stderr)),
    }


def _grid(bank: ItemBank, test: ResponseMatrix, config: ValidationConfig, split: str,
          seed: int, rows: list[dict[str, object]]) -> None:
    """Every k × selector × estimator on the test models against one bank."""
    test = test.aligned_to(bank.item_ids)
    truth = np.nanmean(test.scores, axis=1)
    for k in config.ks:
        if k > bank.n_items:
            continue
        for selector in config.selectors:
            anchors = select_anchors(bank, k, selector, seed)
            prepared = AnchorEstimator(bank, anchors)
            y = test.scores[:, anchors.indices]
            for estimator in config.estimators:
                value, stderr = prepared.predict(estimator, y)
                rows.append({"split": split, "seed": seed, "k": k, "selector": selector,
                             "estimator": estimator, "n_test": len(truth),
                             **score_estimates(value, stderr, truth)})


def validate(responses: ResponseMatrix, config: ValidationConfig | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[list[dict], dict]:
    """Run the validation grid; returns (rows of metrics, run information)."""
    import pandas as pd  # noqa: F401 - imported here so a missing pandas fails early

    config = config or ValidationConfig()
    for registry, names in ((SELECTORS, config.selectors), (ESTIMATORS, config.estimators),
                            (ENGINES, (config.engine,))):
        for name in names:  # a typo fails now, not after the first calibration
            registry.get(name)
    say = progress or (lambda _msg: None)
    matrix = responses.binarized()
    accuracy = matrix.accuracies()
    rows: list[dict[str, object]] = []
    info: dict[str, object] = {"n_models": matrix.n_models, "n_items": matrix.n_items,
                               "calibrations": []}

    chosen_dims: list[int | None] = [config.dims]

    def fit(train: ResponseMatrix, seed: int, label: str) -> ItemBank:
        # D is chosen on held-out models by the first calibration, then kept (saves time)
        started = time.perf_counter()
        bank = calibrate(train, model=config.model, dims=chosen_dims[0], engine=config.engine,
                         epochs=config.epochs, seed=seed)
        chosen_dims[0] = bank.dims
        info["calibrations"].append({"split": label, "seed": seed, "dims": bank.dims,
                                     "seconds": round(time.perf_counter() - started, 1),
                                     "n_train": train.n_models,
                                     "dimension_selection_mae_pp":
                                         bank.metadata["dimension_selection_mae_pp"],
                                     "flagged": bank.flags.to_json(bank.item_ids)})
        say(f"calibrated {label} seed {seed}: D = {bank.dims}, "
            f"{time.perf_counter() - started:.0f} s; flagged: "
            + bank.flags.summary(bank.item_ids, bank.n_items, show=5))
        return bank

    for split in config.splits:
        seeds = config.seeds if split == "random" else config.seeds[:1]
        for seed in seeds:
            train_rows, test_rows = split_models(accuracy, split, config.heldout_fraction, seed)
            bank = fit(matrix.select_models(train_rows), seed, split)
            test = matrix.select_models(test_rows)
            grid_seeds = [seed] if split == "random" else list(config.seeds)
            if split == "strongest" and config.recalibration:
                # alternate strongest models: half join the bank, half are estimated
                ordered = test_rows[np.argsort(-accuracy[test_rows], kind="stable")]
                added, target = ordered[0::2], ordered[1::2]
                target_matrix = matrix.select_models(target)
                started = time.perf_counter()
                recal = recalibrate(bank, matrix.select_models(added), seed=seed)
                info["recalibration_seconds"] = round(time.perf_counter() - started, 1)
                info["recalibration_added"] = int(added.size)
                say(f"recalibrated with {added.size} strong models")
                for s in grid_seeds:
                    _grid(bank, target_matrix, config, "strongest-half (no recal.)", s, rows)
                    _grid(recal, target_matrix, config, "strongest-half (recalibrated)", s,
                          rows)
            for s in grid_seeds:
                _grid(bank, test, config, split, s, rows)
            say(f"{split} seed {seed}: {len(rows)} rows")
    return rows, info


def summarize(rows: Sequence[dict[str, object]]):  # noqa: ANN201 - pandas DataFrame
    """Mean over seeds of every metric, per split × k × selector × estimator."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    keys = ["split", "k", "selector", "estimator"]
    return frame.groupby(keys, sort=False).agg(
        mae_pp=("mae_pp", "mean"), mae_sd=("mae_pp", "std"), spearman=("spearman", "mean"),
        kendall=("kendall", "mean"), stderr_pp=("stderr_pp", "mean"),
        coverage95=("coverage95", "mean"), seeds=("seed", "nunique"),
        n_test=("n_test", "first")).reset_index()
