"""Adaptive testing on a shared anchor core: top-up items chosen at the model's own ability.

Fluid Benchmarking (Hofmann et al. 2025, "Fluid Language Model Benchmarking"): a 2PL bank,
and each next item the one of maximum Fisher information at the model's current ability
estimate, until its standard error is small enough. For the multidimensional
σ(α_iᵀθ − β_i) the CAT literature's D-optimality (Segall 1996, "Multidimensional adaptive
testing"): the item that most increases the determinant of the posterior information
matrix, det(Σ⁻¹ + p_i q_i α_i α_iᵀ) ∝ 1 + p_i q_i α_iᵀ Σ α_i, which for D = 1 is the
largest a_i² p_i q_i, Fluid Benchmarking's rule.

Here every model first answers the same **core** (an :class:`AnchorSet`, e.g. k-means
anchors: it keeps models paired, so two of them are compared on like items), then **top-up
batches** — a batch per round trip, since each costs a worker call — until the standard
error of the accuracy estimate is below ``se_target`` or ``budget`` items were asked.
Flagged items (irt/flags.py) are never asked. The ability is the MAP under the bank's
population prior (irt/ability.py); a batch is chosen greedily, each pick updating the
posterior covariance by Sherman–Morrison at the same θ̂. The estimate is any estimator of
irt/estimators.py on the union of core and top-ups (irt.anchors.union_anchors).

``criterion="accuracy"`` instead picks the item that most reduces the variance of the
predicted accuracy of the unseen items (c-optimality for the quantity a search ranks by):
p_i q_i (gᵀΣα_i)² / (1 + p_i q_i α_iᵀΣα_i), g = Σ_{j unseen} p_j q_j α_j / N.

    test = AdaptiveTest(bank, select_anchors(bank, 10), budget=20, batch=5, se_target=0.03)
    answers = {}
    while not test.done(answers):
        answers |= ask_the_model(test.next_items(answers))   # {item id: 0/1}
    estimate, stderr = test.estimate(answers)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from irt.ability import ability_prior, fit_abilities
from irt.anchors import AnchorSet, union_anchors
from irt.bank import ItemBank
from irt.errors import IRTError
from irt.estimators import DEFAULT_ESTIMATOR, ESTIMATORS, AnchorEstimator

__all__ = ["AdaptiveTest", "CRITERIA", "select_batch"]

CRITERIA = ("d-optimal", "accuracy")


def select_batch(alpha: np.ndarray, prob: np.ndarray, cov: np.ndarray, candidates: np.ndarray,
                 size: int, criterion: str = "d-optimal",
                 target_gradient: np.ndarray | None = None) -> list[int]:
    """Greedy batch of ``size`` items among ``candidates`` (bank indices).

    ``alpha`` (N, D), ``prob`` (N,) P_i(θ̂), ``cov`` (D, D) the posterior covariance of θ̂.
    Each pick maximises the criterion, then Σ ← Σ − pq Σα αᵀΣ / (1 + pq αᵀΣα) (the
    information of the picked item added at the same θ̂). ``target_gradient`` (D,): g of the
    "accuracy" criterion. Ties go to the lower index.
    """
    if criterion not in CRITERIA:
        raise IRTError(f"Unknown adaptive criterion {criterion!r}.",
                       fix=f"use one of {', '.join(CRITERIA)}.")
    if criterion == "accuracy" and target_gradient is None:
        raise IRTError("The 'accuracy' criterion needs the target gradient g.",
                       fix="pass target_gradient, or use criterion='d-optimal'.")
    cov = np.array(cov, dtype=float)
    pool = np.array(sorted(int(i) for i in candidates), dtype=int)
    a = alpha[pool]
    pq = prob[pool] * (1.0 - prob[pool])
    open_ = np.ones(pool.size, dtype=bool)
    chosen: list[int] = []
    for _ in range(min(size, pool.size)):
        sa = a @ cov  # (n, D): Σα_i (Σ symmetric)
        quad = np.einsum("nd,nd->n", sa, a)  # α_iᵀΣα_i
        if criterion == "d-optimal":
            score = pq * quad
        else:
            score = pq * (sa @ target_gradient) ** 2 / (1.0 + pq * quad)
        score = np.where(open_, score, -np.inf)
        best = int(np.argmax(score))
        chosen.append(int(pool[best]))
        open_[best] = False
        v = sa[best]
        cov = cov - pq[best] * np.outer(v, v) / (1.0 + pq[best] * quad[best])
    return chosen


class AdaptiveTest:
    """One bank's adaptive test: the shared ``core``, then top-up batches (module docstring).

    ``answers`` everywhere: {bank item id: score}; scores are binarised at 0.5, as the bank
    was calibrated. ``budget``: most items a model answers, core included. ``batch``: top-up
    items per round. ``se_target``: stop once the estimator's standard error is at most this
    (None: run to the budget). ``estimator``: a name in irt.ESTIMATORS, used for the
    stopping rule and :meth:`estimate`. ``exclude_flagged`` False lets flagged items be
    asked (ablations only).
    """

    def __init__(self, bank: ItemBank, core: AnchorSet, *, budget: int = 20, batch: int = 5,
                 se_target: float | None = 0.03, estimator: str = DEFAULT_ESTIMATOR,
                 criterion: str = "d-optimal", prior_inflation: float = 1.0,
                 exclude_flagged: bool = True, cache_size: int = 256) -> None:
        ESTIMATORS.get(estimator)  # a typo fails here
        if criterion not in CRITERIA:
            raise IRTError(f"Unknown adaptive criterion {criterion!r}.",
                           fix=f"use one of {', '.join(CRITERIA)}.")
        if budget < core.k:
            raise IRTError(f"Adaptive budget {budget} is below the core's {core.k} items.",
                           fix=f"give a budget ≥ {core.k} (core plus top-ups).")
        if batch < 1:
            raise IRTError(f"Adaptive batch {batch} must be ≥ 1.", fix="use batch ≥ 1.")
        self.bank, self.core = bank, core
        self.budget, self.batch, self.se_target = budget, batch, se_target
        self.estimator, self.criterion = estimator, criterion
        self.prior_inflation = prior_inflation
        self.prior = ability_prior(bank.theta, prior_inflation)
        self._lookup = {item: i for i, item in enumerate(bank.item_ids)}
        self._core = set(int(i) for i in core.indices)
        self._selectable = set(int(i) for i in (
            bank.selectable if exclude_flagged else range(bank.n_items)))
        self._cache: OrderedDict[tuple[int, ...], AnchorEstimator] = OrderedDict()
        self._cache_size = cache_size

    # ------------------------------------------------------------------ answers
    def _indexed(self, answers: Mapping[str, float]) -> dict[int, float]:
        """{bank index: 0/1} of the answers; an id outside the bank is an error."""
        out = {}
        for item, score in answers.items():
            index = self._lookup.get(item)
            if index is None:
                raise IRTError(f"Answer to item {item!r}, which is not in the bank.",
                               fix="answer only the items next_items returns.")
            out[index] = float("nan") if score is None or np.isnan(score) else float(
                score >= 0.5)
        return out

    def top_ups(self, answers: Mapping[str, float]) -> tuple[int, ...]:
        """Bank indices of the answered items outside the core, sorted."""
        return tuple(sorted(i for i in self._indexed(answers) if i not in self._core))

    def missing_core(self, answers: Mapping[str, float]) -> list[str]:
        """Core item ids not answered yet (in the core's order)."""
        have = self._indexed(answers)
        return [item for item, i in zip(self.core.item_ids, self.core.indices)
                if int(i) not in have]

    # ------------------------------------------------------------------ estimates
    def prepared(self, top_ups: Sequence[int]) -> AnchorEstimator:
        """The estimators on core + ``top_ups`` (bank indices), cached per item set."""
        key = tuple(sorted(int(i) for i in top_ups))
        cached = self._cache.get(key)
        if cached is None:
            cached = AnchorEstimator(self.bank, union_anchors(self.bank, self.core, key),
                                     prior_inflation=self.prior_inflation)
            self._cache[key] = cached
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return cached

    def responses(self, answers: Mapping[str, float]) -> tuple[AnchorEstimator, np.ndarray]:
        """(the prepared union estimator, y (1, k) in its anchor order, NaN = unanswered)."""
        indexed = self._indexed(answers)
        prepared = self.prepared(self.top_ups(answers))
        y = np.array([[indexed.get(int(i), np.nan) for i in prepared.anchors.indices]])
        return prepared, y

    def estimate(self, answers: Mapping[str, float], endpoints: np.ndarray | None = None
                 ) -> tuple[float, float]:
        """(accuracy estimate, standard error) by ``estimator`` on the union; ``endpoints``
        (1, K): bank rows of the model's merge parents, for the estimators that use them."""
        prepared, y = self.responses(answers)
        chosen = ESTIMATORS.get(self.estimator)
        value, stderr = prepared.predict(self.estimator, y,
                                         endpoints if chosen.uses_endpoints else None)
        return float(value[0]), float(stderr[0])

    def ability(self, answers: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """MAP ability θ̂ (D,) and its Laplace covariance (D, D) from the answered items."""
        indexed = {i: v for i, v in self._indexed(answers).items() if not np.isnan(v)}
        if not indexed:
            return self.prior[0].copy(), self.prior[1].copy()
        items = np.array(sorted(indexed), dtype=int)
        y = np.array([[indexed[i] for i in items]])
        theta, cov = fit_abilities(self.bank.params.subset(items), y, *self.prior)
        return theta[0], cov[0]

    # ------------------------------------------------------------------ the test
    def asked(self, answers: Mapping[str, float]) -> int:
        """How many bank items the model has answered (core and top-ups)."""
        return len(self._indexed(answers))

    def _open(self, answers: Mapping[str, float]) -> np.ndarray:
        have = self._indexed(answers)
        return np.array(sorted(self._selectable - set(have) - self._core), dtype=int)

    def done(self, answers: Mapping[str, float], endpoints: np.ndarray | None = None) -> bool:
        """True once the core is answered and the budget is spent, no unflagged item is
        left, or the estimate's standard error is at most ``se_target``."""
        if self.missing_core(answers):
            return False
        if self.asked(answers) >= self.budget or self._open(answers).size == 0:
            return True
        return (self.se_target is not None
                and self.estimate(answers, endpoints)[1] <= self.se_target)

    def next_items(self, answers: Mapping[str, float], endpoints: np.ndarray | None = None
                   ) -> list[str]:
        """The item ids to ask next: the unanswered core items first (one batch, whatever
        its size), then a top-up batch of at most ``batch`` items chosen at the current θ̂;
        [] when :meth:`done`."""
        missing = self.missing_core(answers)
        if missing:
            return missing
        if self.done(answers, endpoints):
            return []
        size = min(self.batch, self.budget - self.asked(answers))
        theta, cov = self.ability(answers)
        params = self.bank.params
        prob = params.prob(theta[None])[0]
        gradient = None
        if self.criterion == "accuracy":
            unseen = self._open(answers)
            pq = prob[unseen] * (1 - prob[unseen])
            gradient = (pq @ params.alpha[unseen]) / self.bank.n_items
        chosen = select_batch(params.alpha, prob, cov, self._open(answers), size,
                              self.criterion, gradient)
        return [self.bank.item_ids[i] for i in chosen]

    def run(self, respond: Callable[[list[str]], Mapping[str, float]],
            endpoints: np.ndarray | None = None) -> dict[str, float]:
        """Ask ``respond(item ids) -> {item id: score}`` batch by batch until done; all the
        answers (for simulations and tests: ``respond`` looks the items up)."""
        answers: dict[str, float] = {}
        while True:
            items = self.next_items(answers, endpoints)
            if not items:
                return answers
            answers.update(respond(items))
