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
- ``aipw``: ``irt.aipw`` (Zhang et al. 2025).

Adaptive tests (irt/adaptive.py) give each model its own item set: the shared core plus
top-ups, an :class:`AnchorSet` from ``irt.anchors.union_anchors`` (top-ups weigh 0,
``in_core`` False). An :class:`AnchorEstimator` on that set is the estimator on the union:
the anchor mean (and gp/gmp's mean part, AIPW's design correction, mp-IRT's nearest
endpoints) read the core with its weights; p-IRT and mp-IRT count every answered item as
observed and fit the ability on all of them; AIPW's ridge uses all of them as regressors
and counts them as observed (``irt.aipw.aipw_union_estimate``); the gp/gmp blend weights
are measured on the bank's held-out models answering this same item set. Without top-ups
every number is the static path's.

Each is an :class:`Estimator` in the :data:`ESTIMATORS` registry, which says whether it
uses the merge's endpoints; a new one is a class with ``uses_endpoints`` and ``predict``
plus one ``ESTIMATORS.register`` line (docs/extending.md).
Shapes: y_anchor (B, k) with NaN for unanswered anchors; outputs (B,).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np

from irt.ability import ability_prior, fit_abilities, fit_merge_weights
from irt.aipw import RidgeFit, aipw_estimate, aipw_union_estimate, fit_ridge
from irt.anchors import AnchorSet
from irt.bank import ItemBank
from irt.errors import IRTError, UnknownIRTNameError
from irt.params import ItemParams
from irt.responses import ResponseMatrix
from merge3.registry import Registry

__all__ = ["Estimate", "Estimator", "AnchorEstimator", "estimate_accuracy", "ESTIMATORS",
           "DEFAULT_ESTIMATOR"]

# gmp-IRT: within 0.01 pp of gp-IRT on random held-out models at k = 50 and 1.7 pp better on
# the strongest models (benchmarks/irt/README.md), the case a search creates; on the
# searches' own fronts it beats mp-IRT at k = 20 and 50 (benchmarks/search_cost/README.md).
DEFAULT_ESTIMATOR = "gmp-irt"
N_ENDPOINTS = 5

Pair = tuple[np.ndarray, np.ndarray]  # estimates (B,) and standard errors (B,)


@runtime_checkable
class Estimator(Protocol):
    """An accuracy estimator: anchor responses -> estimates and standard errors.

    ``uses_endpoints``: the estimator reads the merge's endpoints (its parents' bank rows,
    ``endpoints`` (B, K)) when the caller knows them; others get ``endpoints=None``.
    ``predict`` gets the prepared :class:`AnchorEstimator` (bank, anchors, and the
    building blocks ``anchor_mean``, ``p_irt``, ``mp_irt``, ``aipw``) and y (B, k).
    """

    uses_endpoints: bool

    def predict(self, prepared: AnchorEstimator, y: np.ndarray,
                endpoints: np.ndarray | None) -> Pair: ...


def _is_estimator(entry: object) -> bool:
    return not isinstance(entry, type) and isinstance(entry, Estimator)


ESTIMATORS: Registry[Estimator] = Registry(
    "estimator", _is_estimator, default=DEFAULT_ESTIMATOR, error=UnknownIRTNameError,
    expects="Estimator instance (uses_endpoints: bool, predict(prepared, y, endpoints))")


@dataclass(frozen=True, slots=True)
class Estimate:
    """One model's estimated accuracy (fraction in [0, 1]) and its standard error."""

    model: str
    estimator: str
    estimate: float
    stderr: float
    items_used: int


def _weighted_mean(y: np.ndarray, weights: np.ndarray) -> Pair:
    mask = ~np.isnan(y)
    w = np.where(mask, weights, 0.0)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    value = np.sum(w * np.nan_to_num(y), axis=1)
    # clipped: a mean of 0/1 answers can round to 1 + 1e-16, whose 1 − value is negative
    se = np.sqrt(np.sum(w**2, axis=1) * np.clip(value * (1 - value), 0.0, None))
    return value, se


@dataclass(frozen=True)
class _Population:
    """The models an estimator learns from: item params, abilities, responses."""

    params: ItemParams
    theta: np.ndarray
    responses: np.ndarray


class AnchorEstimator:
    """Every estimator, prepared once for one bank and one anchor set (cheap to reuse)."""

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
    def _ridge(self) -> RidgeFit:
        return fit_ridge(self.full.responses, self.anchors.indices, self.rest)

    # ------------------------------------------------------------------ building blocks
    def anchor_mean(self, y: np.ndarray) -> Pair:
        """The weighted anchor mean Σ_c w_c y_c over each model's answered anchors."""
        return _weighted_mean(y, self.anchors.weights)

    def p_irt(self, y: np.ndarray) -> Pair:
        """p-IRT, its s.e. widened by the held-out misfit."""
        value, se = self._p_irt(self.full, y)
        return value, self._with_misfit(se, "gp")

    def mp_irt(self, y: np.ndarray, endpoints: np.ndarray | None = None) -> Pair:
        """mp-IRT over ``endpoints`` (else the nearest bank models), s.e. widened."""
        value, se = self._mp_irt(self.full, y, endpoints)
        return value, self._with_misfit(se, "gmp")

    def aipw(self, y: np.ndarray) -> Pair:
        """AIPW (irt.aipw) with the bank's ridge fit, made once per anchor set; on a union
        with top-ups, :func:`irt.aipw.aipw_union_estimate`. Anchors covering the bank:
        nothing is left to predict, the answered items' mean (s.e. 0)."""
        if self.rest.size == 0:
            answered = (~np.isnan(y)).sum(axis=1)
            return np.nansum(y, axis=1) / np.maximum(answered, 1), np.zeros(y.shape[0])
        if self.anchors.core_mask.all():
            return aipw_estimate(self._ridge, y, self.anchors.indices, self.anchors.weights,
                                 self.n_items)
        return aipw_union_estimate(self._ridge, y, self.anchors.indices, self.anchors.weights,
                           self.anchors.core_mask, self.n_items)

    # ------------------------------------------------------------------ public
    def predict(self, estimator: str, y_anchor: np.ndarray,
                endpoints: np.ndarray | None = None) -> Pair:
        """Estimates and standard errors (B,) from anchor responses (B, k).

        ``estimator``: a name in :data:`ESTIMATORS` (or a ``module:attr`` plug-in).
        ``endpoints`` (B, K): bank row indices of each model's merge parents, passed to
        estimators that use them (mp/gmp-IRT).
        """
        y = np.atleast_2d(np.asarray(y_anchor, dtype=float))
        if y.shape[1] != self.anchors.k:
            raise IRTError(f"Got responses to {y.shape[1]} anchors, expected {self.anchors.k}.",
                           fix="pass one column per anchor, in the anchor set's order.")
        chosen = ESTIMATORS.get(estimator)
        return chosen.predict(self, y, endpoints if chosen.uses_endpoints else None)


def _blend(lam: float, mean: Pair, irt: Pair) -> Pair:
    """λ·mean + (1 − λ)·IRT, s.e. of independent parts."""
    return lam * mean[0] + (1 - lam) * irt[0], np.sqrt((lam * mean[1])**2
                                                       + ((1 - lam) * irt[1])**2)


class AnchorMean:
    """The weighted anchor mean (tinyBenchmarks)."""

    uses_endpoints = False

    def predict(self, prepared: AnchorEstimator, y: np.ndarray, endpoints: None) -> Pair:
        return prepared.anchor_mean(y)


class PIRT:
    """p-IRT: observed anchors plus IRT predictions of the rest (tinyBenchmarks)."""

    uses_endpoints = False

    def predict(self, prepared: AnchorEstimator, y: np.ndarray, endpoints: None) -> Pair:
        return prepared.p_irt(y)


class GPIRT:
    """gp-IRT: the anchor mean and p-IRT blended by the held-out λ (tinyBenchmarks §3.2)."""

    uses_endpoints = False

    def predict(self, prepared: AnchorEstimator, y: np.ndarray, endpoints: None) -> Pair:
        return _blend(prepared.gp_lambda, prepared.anchor_mean(y), prepared.p_irt(y))


class MPIRT:
    """mp-IRT: p-IRT at θ̃ = Σ_k λ_k θ_k over the merge's endpoints (MERGE³)."""

    uses_endpoints = True

    def predict(self, prepared: AnchorEstimator, y: np.ndarray,
                endpoints: np.ndarray | None) -> Pair:
        return prepared.mp_irt(y, endpoints)


class GMPIRT:
    """gmp-IRT: the anchor mean and mp-IRT blended by the held-out λ."""

    uses_endpoints = True

    def predict(self, prepared: AnchorEstimator, y: np.ndarray,
                endpoints: np.ndarray | None) -> Pair:
        return _blend(prepared.gmp_lambda, prepared.anchor_mean(y),
                      prepared.mp_irt(y, endpoints))


class AIPW:
    """AIPW: the anchor mean corrected by a cross-fitted ridge (Zhang et al. 2025)."""

    uses_endpoints = False

    def predict(self, prepared: AnchorEstimator, y: np.ndarray, endpoints: None) -> Pair:
        return prepared.aipw(y)


ESTIMATORS.register("mean", AnchorMean())
ESTIMATORS.register("p-irt", PIRT())
ESTIMATORS.register("gp-irt", GPIRT())
ESTIMATORS.register("mp-irt", MPIRT())
ESTIMATORS.register("gmp-irt", GMPIRT())
ESTIMATORS.register("aipw", AIPW())


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
    ``endpoints``: {model: [parent model names in the bank]}, for the estimators that
    use them (``uses_endpoints``: mp-IRT, gmp-IRT).
    ``prior_inflation``: scale of the θ prior's covariance (see AnchorEstimator).
    """
    chosen = ESTIMATORS.get(estimator)
    matrix = responses.binarized()
    anchors = anchors or _given_anchors(bank, matrix)
    y = matrix.aligned_to(anchors.item_ids).scores
    prepared = AnchorEstimator(bank, anchors, prior_inflation=prior_inflation)
    parents = None
    if endpoints and chosen.uses_endpoints:
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
