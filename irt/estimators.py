"""Accuracy estimators from anchor responses, each with a standard error.

- ``mean``: weighted anchor mean Σ_c w_c y_c (tinyBenchmarks, Polo et al. 2024).
- ``p-irt``: (n/N)·ȳ_S + (1 − n/N)·mean_{i∉S} P_i(θ̂), θ̂ by MAP on S (tinyBenchmarks).
- ``gp-irt``: λ·mean + (1 − λ)·p-IRT, λ = b²/(b² + σ²) with b² the p-IRT and σ² the anchor
  mean's squared error on the bank's held-out models (tinyBenchmarks §3.2, measured).
- ``mp-irt``: p-IRT with θ̃ = Σ_k λ_k θ_k, λ fitted on S over endpoint abilities (MERGE³,
  Mencattini et al. 2025). Endpoints: the merge's parents when given, else the K bank
  models that agree most with the model on the anchors.
- ``gmp-irt``: blend of the anchor mean and mp-IRT, weight chosen like gp-IRT's λ (MERGE³
  fixes 0.5).
- ``aipw``: ȳ_S + (mean_{i∉S} f̂ − mean_S f̂)/(1 + n/N), f̂ a ridge regression of each item's
  correctness on the anchors' across the bank's models, cross-fitted on S (Zhang et al.
  2025, "Benchmark prediction from fewer data misses the mark").
Shapes: y_anchor (B, k) with NaN for unanswered anchors; outputs (B,).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from irt.ability import ability_prior, fit_abilities, fit_merge_weights
from irt.anchors import AnchorSet
from irt.bank import ItemBank
from irt.errors import IRTError
from irt.params import ItemParams
from irt.responses import ResponseMatrix

__all__ = ["Estimate", "AnchorEstimator", "estimate_accuracy", "ESTIMATORS",
           "DEFAULT_ESTIMATOR"]

ESTIMATORS = ("mean", "p-irt", "gp-irt", "mp-irt", "gmp-irt", "aipw")
# gmp-IRT: within 0.01 pp of gp-IRT on random held-out models at k = 50 and 1.7 pp better on
# the strongest models (benchmarks/irt/README.md), the case a search creates.
DEFAULT_ESTIMATOR = "gmp-irt"
N_ENDPOINTS = 5


@dataclass(frozen=True, slots=True)
class Estimate:
    """One model's estimated accuracy (fraction in [0, 1]) and its standard error."""

    model: str
    estimator: str
    estimate: float
    stderr: float
    items_used: int


def _weighted_mean(y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = ~np.isnan(y)
    w = np.where(mask, weights, 0.0)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    value = np.sum(w * np.nan_to_num(y), axis=1)
    se = np.sqrt(np.sum(w**2, axis=1) * value * (1 - value))
    return value, se


@dataclass(frozen=True)
class _Population:
    """The models an estimator learns from: item params, abilities, responses."""

    params: ItemParams
    theta: np.ndarray
    responses: np.ndarray


class AnchorEstimator:
    """All estimators, prepared once for one bank and one anchor set (cheap to reuse)."""

    def __init__(self, bank: ItemBank, anchors: AnchorSet, n_endpoints: int = N_ENDPOINTS,
                 prior_inflation: float = 1.0) -> None:
        """``prior_inflation`` multiplies the covariance of the population prior on θ
        (> 1 lets abilities leave the calibration range: models stronger than the bank)."""
        self.bank = bank
        self.anchors = anchors
        self.n_endpoints = n_endpoints
        self.prior_inflation = prior_inflation
        self.n_items = bank.n_items
        self.rest = np.setdiff1d(np.arange(self.n_items), anchors.indices)
        self.full = _Population(bank.params, bank.theta, bank.responses)

    # ------------------------------------------------------------------ IRT predictions
    def _irt(self, pop: _Population, y: np.ndarray, theta: np.ndarray, cov: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """p-IRT value and s.e. for abilities θ (B, D) with Laplace covariances (B, D, D)."""
        n_answered = (~np.isnan(y)).sum(axis=1)
        frac = n_answered / self.n_items
        observed = np.nansum(y, axis=1) / np.maximum(n_answered, 1)
        # unanswered anchors are predicted, like the items outside S
        p_all = pop.params.prob(theta)
        unanswered = np.isnan(y)
        predicted_sum = p_all[:, self.rest].sum(axis=1) + np.sum(
            np.where(unanswered, p_all[:, self.anchors.indices], 0.0), axis=1)
        n_pred = np.maximum(self.n_items - n_answered, 1)
        value = frac * observed + (1 - frac) * predicted_sum / n_pred
        pq = p_all * (1 - p_all)
        grad = (pq[:, self.rest] @ pop.params.alpha[self.rest]) / self.n_items  # (B, D)
        var_theta = np.einsum("bd,bde,be->b", grad, cov, grad)
        var_items = pq[:, self.rest].sum(axis=1) / self.n_items**2
        return value, np.sqrt(var_theta + var_items)

    def _p_irt(self, pop: _Population, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, cov = ability_prior(pop.theta, self.prior_inflation)
        theta, theta_cov = fit_abilities(pop.params.subset(self.anchors.indices), y, mean, cov)
        return self._irt(pop, y, theta, theta_cov)

    def _nearest_endpoints(self, pop: _Population, y: np.ndarray) -> np.ndarray:
        """(B, K) rows of ``pop`` agreeing most with each model on the answered anchors."""
        pop_y = pop.responses[:, self.anchors.indices]
        w = self.anchors.weights
        mask = ~np.isnan(y)
        diff = np.abs(np.nan_to_num(y)[:, None, :] - np.nan_to_num(pop_y, nan=0.5)[None])
        distance = np.sum(np.where(mask[:, None, :], diff, 0.0) * w, axis=2)
        k = min(self.n_endpoints, pop.theta.shape[0])
        return np.argsort(distance, axis=1, kind="stable")[:, :k]

    def _mp_irt(self, pop: _Population, y: np.ndarray, endpoints: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
        if endpoints is None:
            endpoints = self._nearest_endpoints(pop, y)
        endpoint_theta = pop.theta[endpoints]  # (B, K, D)
        lam, lam_cov = fit_merge_weights(pop.params.subset(self.anchors.indices), y,
                                         endpoint_theta)
        theta = np.einsum("bk,bkd->bd", lam, endpoint_theta)
        theta_cov = np.einsum("bkd,bkl,ble->bde", endpoint_theta, lam_cov, endpoint_theta)
        return self._irt(pop, y, theta, theta_cov)

    # ------------------------------------------------------------------ blend weights
    @cached_property
    def _validation(self) -> tuple[_Population, np.ndarray, np.ndarray] | None:
        """(fit without held-out models, held-out anchor responses, held-out accuracy)."""
        params = self.bank.validation_params()
        if params is None or self.bank.validation["heldout"].size == 0:
            return None
        train = self.bank.validation["train"]
        heldout = self.bank.validation["heldout"]
        pop = _Population(params, self.bank.validation["theta_train"],
                          self.bank.responses[train])
        y = self.bank.responses[heldout][:, self.anchors.indices]
        return pop, y, np.nanmean(self.bank.responses[heldout], axis=1)

    def _heldout_errors(self, kind: str) -> tuple[float, float, float]:
        """(b², σ², excess) on the held-out models: the IRT estimate's and the anchor
        mean's mean squared errors, and how much the IRT's squared error exceeds its own
        mean s.e.² (model misfit the Laplace s.e. does not see)."""
        val = self._validation
        if val is None:  # no held-out models: theoretical anchor variance, in-sample bias
            pop, y = self.full, self.full.responses[:, self.anchors.indices]
            truth = np.nanmean(self.full.responses, axis=1)
            anchor_mse = float(np.mean(truth * (1 - truth)) * np.sum(self.anchors.weights**2))
        else:
            pop, y, truth = val
            anchor_mse = float(np.mean((_weighted_mean(y, self.anchors.weights)[0] - truth)**2))
        irt, irt_se = self._p_irt(pop, y) if kind == "gp" else self._mp_irt(pop, y, None)
        bias2 = float(np.mean((irt - truth) ** 2))
        if val is None:  # in-sample errors say nothing about misfit: keep the Laplace s.e.
            return bias2, anchor_mse, 0.0
        return bias2, anchor_mse, max(0.0, bias2 - float(np.mean(irt_se**2)))

    @cached_property
    def _gp_errors(self) -> tuple[float, float, float]:
        return self._heldout_errors("gp")

    @cached_property
    def _gmp_errors(self) -> tuple[float, float, float]:
        return self._heldout_errors("gmp")

    @property
    def gp_lambda(self) -> float:
        """λ = b²/(b² + σ²) of gp-IRT, measured on the bank's held-out models."""
        bias2, anchor_mse, _ = self._gp_errors
        return bias2 / max(bias2 + anchor_mse, 1e-12)

    @property
    def gmp_lambda(self) -> float:
        """The same blend weight for gmp-IRT (mp-IRT's held-out error)."""
        bias2, anchor_mse, _ = self._gmp_errors
        return bias2 / max(bias2 + anchor_mse, 1e-12)

    def _with_misfit(self, se: np.ndarray, kind: str) -> np.ndarray:
        """Widen the IRT s.e. by the held-out misfit so 95% intervals keep their promise."""
        excess = (self._gp_errors if kind == "gp" else self._gmp_errors)[2]
        return np.sqrt(se**2 + excess)

    # ------------------------------------------------------------------ AIPW
    @cached_property
    def _ridge(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """Ridge of all items on the anchors across bank models, plus cross-fitted S fits."""
        from sklearn.linear_model import Ridge, RidgeCV

        responses = self.full.responses
        col_mean = np.nan_to_num(np.nanmean(responses, axis=0), nan=0.5)
        filled = np.where(np.isnan(responses), col_mean, responses)
        x = filled[:, self.anchors.indices]
        alphas = np.logspace(-2, 3, 11)
        model = RidgeCV(alphas=alphas).fit(x, filled[:, self.rest])
        loo = []
        for j in range(self.anchors.k):  # f̂ for anchor j must not see y_j
            others = np.delete(np.arange(self.anchors.k), j)
            if others.size == 0:
                loo.append((None, float(col_mean[self.anchors.indices[j]])))
                continue
            fit = Ridge(alpha=float(model.alpha_)).fit(x[:, others], x[:, j])
            loo.append((fit, others))
        return col_mean, model.coef_, np.atleast_1d(model.intercept_), loo

    def _aipw(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        col_mean, coef, intercept, loo = self._ridge
        x = np.where(np.isnan(y), col_mean[self.anchors.indices], y)
        f_rest = np.clip(x @ coef.T + intercept, 0, 1).mean(axis=1)
        f_anchor = np.empty_like(x)
        for j, (fit, others) in enumerate(loo):
            f_anchor[:, j] = others if fit is None else fit.predict(x[:, others])
        f_anchor = np.clip(f_anchor, 0, 1)
        mask = ~np.isnan(y)
        w = np.where(mask, self.anchors.weights, 0.0)
        w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        n = mask.sum(axis=1)
        y_bar = np.sum(w * np.nan_to_num(y), axis=1)
        f_s = np.sum(w * f_anchor, axis=1)
        value = y_bar + (f_rest - f_s) / (1 + n / self.n_items)
        resid = np.where(mask, np.nan_to_num(y) - f_anchor, 0.0)
        centred = resid - np.sum(w * resid, axis=1, keepdims=True)
        var = np.sum(w**2 * centred**2 * mask, axis=1) * n / np.maximum(n - 1, 1)
        return np.clip(value, 0, 1), np.sqrt(var)

    # ------------------------------------------------------------------ public
    def predict(self, estimator: str, y_anchor: np.ndarray,
                endpoints: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Estimates and standard errors (B,) from anchor responses (B, k).

        ``endpoints`` (B, K): bank row indices of each model's merge parents (mp/gmp-IRT).
        """
        y = np.atleast_2d(np.asarray(y_anchor, dtype=float))
        if y.shape[1] != self.anchors.k:
            raise IRTError(f"Got responses to {y.shape[1]} anchors, expected {self.anchors.k}.",
                           fix="pass one column per anchor, in the anchor set's order.")
        if estimator == "mean":
            return _weighted_mean(y, self.anchors.weights)
        if estimator == "p-irt":
            value, se = self._p_irt(self.full, y)
            return value, self._with_misfit(se, "gp")
        if estimator == "mp-irt":
            value, se = self._mp_irt(self.full, y, endpoints)
            return value, self._with_misfit(se, "gmp")
        if estimator in ("gp-irt", "gmp-irt"):
            lam = self.gp_lambda if estimator == "gp-irt" else self.gmp_lambda
            mean, mean_se = _weighted_mean(y, self.anchors.weights)
            irt, irt_se = (self._p_irt(self.full, y) if estimator == "gp-irt"
                           else self._mp_irt(self.full, y, endpoints))
            irt_se = self._with_misfit(irt_se, "gp" if estimator == "gp-irt" else "gmp")
            return lam * mean + (1 - lam) * irt, np.sqrt((lam * mean_se)**2
                                                         + ((1 - lam) * irt_se)**2)
        if estimator == "aipw":
            return self._aipw(y)
        raise IRTError(f"Unknown estimator {estimator!r}.", fix=f"use one of {ESTIMATORS}.")


def _given_anchors(bank: ItemBank, responses: ResponseMatrix) -> AnchorSet:
    """Without an anchor file, every bank item the models answered is an anchor."""
    aligned = responses.aligned_to(bank.item_ids)
    answered = np.flatnonzero(aligned.observed.any(axis=0))
    if answered.size == 0:
        raise IRTError("The responses share no item with the bank.",
                       fix="evaluate the models on the bank's items (ids task/item).")
    return AnchorSet(answered, tuple(bank.item_ids[i] for i in answered),
                     np.full(answered.size, 1.0 / answered.size), "given", 0)


def estimate_accuracy(bank: ItemBank, responses: ResponseMatrix,
                      estimator: str = DEFAULT_ESTIMATOR, anchors: AnchorSet | None = None,
                      endpoints: dict[str, list[str]] | None = None,
                      prior_inflation: float = 1.0) -> list[Estimate]:
    """Estimate each model's accuracy on the whole bank from its anchor responses.

    ``responses``: the new models' scores (binarised here); only anchor items are read.
    ``anchors``: the anchor set (default: every bank item the models answered).
    ``endpoints``: {model: [parent model names in the bank]} for mp-IRT / gmp-IRT.
    ``prior_inflation``: scale of the θ prior's covariance (see AnchorEstimator).
    """
    if estimator not in ESTIMATORS:
        raise IRTError(f"Unknown estimator {estimator!r}.", fix=f"use one of {ESTIMATORS}.")
    matrix = responses.binarized()
    anchors = anchors or _given_anchors(bank, matrix)
    y = matrix.aligned_to(anchors.item_ids).scores
    prepared = AnchorEstimator(bank, anchors, prior_inflation=prior_inflation)
    parents = None
    if endpoints and estimator in ("mp-irt", "gmp-irt"):
        rows = {m: k for k, m in enumerate(bank.model_ids)}
        lists = []
        for model in matrix.model_ids:
            names = endpoints.get(model)
            if not names:
                raise IRTError(f"No endpoints given for model {model!r}.",
                               fix="give every model its parents, or none at all.")
            unknown = [n for n in names if n not in rows]
            if unknown:
                raise IRTError(f"Endpoints {unknown} of {model!r} are not bank models.",
                               fix="recalibrate the bank with the parents' responses.")
            lists.append([rows[n] for n in names])
        if len({len(x) for x in lists}) > 1:  # ragged: estimate model by model
            out = []
            for k, model in enumerate(matrix.model_ids):
                v, s = prepared.predict(estimator, y[k:k + 1], np.array([lists[k]]))
                out.append(Estimate(model, estimator, float(v[0]), float(s[0]),
                                    int((~np.isnan(y[k])).sum())))
            return out
        parents = np.array(lists)
    values, stderrs = prepared.predict(estimator, y, parents)
    used = (~np.isnan(y)).sum(axis=1)
    return [Estimate(m, estimator, float(v), float(s), int(u))
            for m, v, s, u in zip(matrix.model_ids, values, stderrs, used)]
