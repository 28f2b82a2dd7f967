"""Calibrate an item bank from past responses; recalibrate it with new models.

Models: the 2PL and the multidimensional σ(α_iᵀθ − β_i) of tinyBenchmarks (Polo et al.
2024), whose dimension D is chosen on held-out models (the simplest D within 0.25 pp of the
best held-out p-IRT error, IRT.md). Engines: py-irt 0.7.1 (SVI, hierarchical priors) or the
numpy/scipy joint MAP, each a :class:`CalibrationEngine` in the :data:`ENGINES` registry
(a new one: a class with ``fit`` plus one ``ENGINES.register`` line, docs/extending.md).
Recalibration (MERGE³, Mencattini et al. 2025: the search creates models stronger than the
population) refits warm-started from the current bank.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

import numpy as np

from irt.ability import ability_prior, fit_abilities
from irt.bank import ItemBank
from irt.errors import IRTError, UnknownIRTNameError
from irt.params import ItemParams
from irt.responses import ResponseMatrix
from merge3.registry import Registry

__all__ = ["calibrate", "recalibrate", "fit_item_params", "heldout_error", "ENGINES",
           "DEFAULT_ENGINE", "CalibrationEngine", "DIM_CANDIDATES"]

DIM_CANDIDATES = (2, 5, 10, 15)
_DIM_TOLERANCE_PP = 0.25
DEFAULT_ENGINE = "scipy"  # no Pyro; 22-44x less wall time than py-irt (benchmarks/irt)

Start = tuple[np.ndarray, np.ndarray, np.ndarray]


@runtime_checkable
class CalibrationEngine(Protocol):
    """Fits item parameters and abilities to binary scores (M, N), NaN = missing.

    ``init`` = (θ (M, D), α (N, D), β (N,)) warm start, or None; returns (ItemParams,
    θ (M, D)). ``epochs`` is for iterative engines (py-irt's SVI); others may ignore it.
    """

    def fit(self, scores: np.ndarray, dims: int, *, epochs: int, seed: int,
            init: Start | None) -> tuple[ItemParams, np.ndarray]: ...


ENGINES: Registry[CalibrationEngine] = Registry(
    "calibration engine",
    lambda e: not isinstance(e, type) and isinstance(e, CalibrationEngine),
    default=DEFAULT_ENGINE, error=UnknownIRTNameError,
    expects="CalibrationEngine instance (fit(scores, dims, *, epochs, seed, init))")
ENGINES.register("scipy", "irt.engine_scipy:scipy_engine")  # lazy: imported on first use
ENGINES.register("py-irt", "irt.engine_pyirt:py_irt_engine")


def fit_item_params(scores: np.ndarray, dims: int, engine: str = DEFAULT_ENGINE, *,
                    epochs: int = 2000, seed: int = 0, init: Start | None = None
                    ) -> tuple[ItemParams, np.ndarray]:
    """One calibration: (item parameters, abilities (M, D)) of binary ``scores`` (M, N)."""
    return ENGINES.get(engine).fit(scores, dims, epochs=epochs, seed=seed, init=init)


def heldout_error(params: ItemParams, theta_train: np.ndarray, scores: np.ndarray,
                  n_probe: int, seed: int = 0, repeats: int = 3) -> float:
    """Mean absolute error (pp) of p-IRT accuracy on held-out models from n_probe random items."""
    rng = np.random.default_rng(seed)
    mean, cov = ability_prior(theta_train)
    truth = np.nanmean(scores, axis=1)
    n_items = scores.shape[1]
    errors = []
    for _ in range(repeats):
        probe = rng.choice(n_items, size=min(n_probe, n_items), replace=False)
        theta, _ = fit_abilities(params.subset(probe), scores[:, probe], mean, cov)
        rest = np.setdiff1d(np.arange(n_items), probe)
        predicted = params.subset(rest).prob(theta).mean(axis=1)
        observed = np.nanmean(scores[:, probe], axis=1)
        frac = probe.size / n_items
        estimate = frac * np.nan_to_num(observed, nan=0.5) + (1 - frac) * predicted
        errors.append(np.nanmean(np.abs(estimate - truth)))
    return 100.0 * float(np.mean(errors))


def _split(n_models: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_heldout = int(round(fraction * n_models)) if n_models >= 10 else 0
    order = rng.permutation(n_models)
    return np.sort(order[n_heldout:]), np.sort(order[:n_heldout])


def _start_from(params: ItemParams, theta_rows: np.ndarray, scores: np.ndarray,
                fitted_rows: np.ndarray) -> Start:
    """Warm start for all rows of ``scores``: known θ where fitted, MAP θ elsewhere."""
    theta = np.zeros((scores.shape[0], params.dims))
    theta[fitted_rows] = theta_rows
    others = np.setdiff1d(np.arange(scores.shape[0]), fitted_rows)
    if others.size:
        mean, cov = ability_prior(theta_rows)
        theta[others] = fit_abilities(params, scores[others], mean, cov)[0]
    return theta, params.alpha.copy(), params.beta.copy()


def calibrate(responses: ResponseMatrix, *, model: str = "mirt", dims: int | None = None,
              engine: str = DEFAULT_ENGINE, epochs: int = 2000, seed: int = 0,
              heldout_fraction: float = 0.2,
              dim_candidates: Sequence[int] = DIM_CANDIDATES) -> ItemBank:
    """Fit an item bank to ``responses`` (binarised first).

    ``model``: "2pl" (D = 1) or "mirt" (σ(α·θ − β), D = ``dims`` or chosen on held-out
    models among ``dim_candidates``). A ``heldout_fraction`` of the models is kept out of a
    validation fit stored in the bank, so estimators can measure the IRT error honestly.
    """
    if model not in ("2pl", "mirt"):
        raise IRTError(f"Unknown IRT model {model!r}.", fix="use '2pl' or 'mirt'.")
    ENGINES.get(engine)  # an unknown engine fails before any work
    started = time.perf_counter()
    matrix = responses.binarized()
    answered = matrix.observed.any(axis=0)
    if not answered.all():
        matrix = matrix.select_items(np.flatnonzero(answered))
    if matrix.n_models < 3 or matrix.n_items < 2:
        raise IRTError(f"Calibration needs ≥ 3 models and ≥ 2 items, got {matrix.n_models} × "
                       f"{matrix.n_items}.", fix="load more responses.")
    scores = matrix.scores
    train, heldout = _split(matrix.n_models, heldout_fraction, seed)
    n_probe = max(2, min(100, matrix.n_items // 4))
    selection: dict[str, float] = {}
    candidates = [1] if model == "2pl" else ([dims] if dims is not None else list(dim_candidates))
    fits: dict[int, tuple[ItemParams, np.ndarray]] = {}
    timing: list[dict[str, object]] = []  # where a calibration's time goes, fit by fit
    for d in candidates:
        clock = time.perf_counter()
        fits[d] = fit_item_params(scores[train], d, engine, epochs=epochs, seed=seed)
        timing.append({"stage": "selection fit" if len(candidates) > 1 else "validation fit",
                       "dims": d, "models": int(train.size),
                       "seconds": round(time.perf_counter() - clock, 2)})
        if heldout.size:
            clock = time.perf_counter()
            selection[str(d)] = heldout_error(*fits[d], scores[heldout], n_probe, seed)
            timing.append({"stage": "held-out error", "dims": d, "models": int(heldout.size),
                           "seconds": round(time.perf_counter() - clock, 2)})
    if len(candidates) > 1 and selection:
        best = min(selection.values())
        chosen = min(d for d in candidates if selection[str(d)] <= best + _DIM_TOLERANCE_PP)
    else:
        chosen = candidates[0]
    val_params, val_theta = fits[chosen]
    clock = time.perf_counter()
    start = _start_from(val_params, val_theta, scores, train)
    params, theta = fit_item_params(scores, chosen, engine, epochs=epochs, seed=seed,
                                    init=start)
    timing.append({"stage": "final fit (warm start)", "dims": chosen,
                   "models": int(matrix.n_models),
                   "seconds": round(time.perf_counter() - clock, 2)})
    validation = {}
    if heldout.size:
        validation = {"alpha": val_params.alpha, "beta": val_params.beta,
                      "theta_train": val_theta, "train": train, "heldout": heldout}
    metadata = {
        "model": model, "engine": engine, "dims": chosen, "epochs": epochs, "seed": seed,
        "dimension_selection_mae_pp": selection, "heldout_fraction": heldout_fraction,
        "n_models": matrix.n_models, "n_items": matrix.n_items,
        "n_observed": int(matrix.observed.sum()),
        "dropped_unanswered_items": int((~answered).sum()),
        "seconds": round(time.perf_counter() - started, 2), "timing": timing,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recalibrations": [],
    }
    return ItemBank(params, matrix.item_ids, matrix.item_tasks, matrix.model_ids, theta,
                    scores, metadata, validation)


def recalibrate(bank: ItemBank, new_responses: ResponseMatrix, *, epochs: int = 500,
                engine: str | None = None, seed: int = 0) -> ItemBank:
    """Add fully evaluated models (e.g. merges found by a search) and refit warm-started.

    New models' responses are aligned to the bank's items (other items are ignored); a
    model already in the bank is replaced. The validation fit is refitted too, with the new
    models on its training side, so gp-IRT's λ reflects the new population.
    """
    started = time.perf_counter()
    engine = engine or str(bank.metadata.get("engine", DEFAULT_ENGINE))
    ENGINES.get(engine)
    new = new_responses.binarized().aligned_to(bank.item_ids)
    if not new.observed.any():
        raise IRTError("The new responses share no item with the bank.",
                       fix="evaluate the new models on the bank's items (task/item ids).")
    keep = np.array([m not in set(new.model_ids) for m in bank.model_ids])
    old_rows = np.flatnonzero(keep)
    scores = np.vstack([bank.responses[old_rows], new.scores])
    model_ids = tuple(bank.model_ids[r] for r in old_rows) + new.model_ids
    start = _start_from(bank.params, bank.theta[old_rows], scores, np.arange(old_rows.size))
    params, theta = fit_item_params(scores, bank.dims, engine, epochs=epochs, seed=seed,
                                    init=start)
    validation: dict[str, np.ndarray] = {}
    val_params = bank.validation_params()
    if val_params is not None:
        remap = -np.ones(len(bank.model_ids), dtype=int)
        remap[old_rows] = np.arange(old_rows.size)
        old_train = remap[bank.validation["train"]]
        old_train = old_train[old_train >= 0]
        heldout = remap[bank.validation["heldout"]]
        heldout = heldout[heldout >= 0]
        new_rows = np.arange(old_rows.size, scores.shape[0])
        train = np.concatenate([old_train, new_rows])
        theta_train_old = bank.validation["theta_train"][
            np.flatnonzero(np.isin(bank.validation["train"], old_rows))]
        val_start = _start_from(val_params, theta_train_old, scores[train],
                                np.arange(old_train.size))
        vp, vt = fit_item_params(scores[train], bank.dims, engine, epochs=epochs, seed=seed,
                                 init=val_start)
        validation = {"alpha": vp.alpha, "beta": vp.beta, "theta_train": vt, "train": train,
                      "heldout": heldout}
    metadata = dict(bank.metadata)
    metadata["recalibrations"] = [*bank.metadata.get("recalibrations", []), {
        "added_models": len(new.model_ids), "engine": engine, "epochs": epochs,
        "seconds": round(time.perf_counter() - started, 2),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}]
    metadata["n_models"] = len(model_ids)
    return ItemBank(params, bank.item_ids, bank.item_tasks, model_ids, theta, scores,
                    metadata, validation)
