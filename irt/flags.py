"""Items whose discrimination is non-positive or near zero: flagged, left out of selection.

Published LLM benchmarks hold 3–6% such items (mislabelled answers, items every model gets
right or wrong; Hofmann et al. 2025, "Fluid Language Model Benchmarking"): they say
nothing about a model's ability, or the opposite of the truth, so anchor selection and
adaptive testing must not spend a model's answers on them.

In the multidimensional σ(α_iᵀθ − β_i) "non-positive" needs a direction: θ can be rotated,
and an item of one task may rightly load against the ability another task wants (experts
trade one skill for another). An item is judged against its own task's ability, on the
calibration population: with ℓ_im = α_iᵀθ_m its logit for model m (without β_i),

- ``spread`` s_i = sd_m(ℓ_im): how far the item's log-odds move across the population
  (rotation- and scale-free; for the 2PL, |a_i|·sd(θ)). s_i < :data:`MIN_SPREAD` is
  **near-zero** discrimination: across ±2 population SDs the item's probability moves by
  at most ~0.1 around 0.5.
- ``loading`` r_i = corr_m(ℓ_im, accuracy of model m on task(i)): the sign of the item's
  loading on the direction in which its task's accuracy grows (for the 2PL, sign(a_i)
  when θ is oriented with accuracy). r_i ≤ 0 is **negative** discrimination: better
  models are predicted to do worse on it.

Items every population model answers alike (all right or all wrong) are not judged: their
α is not identified by the data (the fit leaves it where it started: once β saturates
the logits, the likelihood's gradient on α vanishes), so its sign means nothing. They are
counted (``constant``) and stay selectable: they say nothing about ability differences
within the population, but nothing false either. Nor are items of a bank with fewer than
3 models, or of a task whose accuracy does not vary across models, ever flagged.
Shapes: alpha (N, D), theta (M, D), responses (M, N).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ItemFlags", "flag_items", "MIN_SPREAD", "NEGATIVE", "NEAR_ZERO"]

# logit s.d. across the population below which an item is "near zero" (module docstring)
MIN_SPREAD = 0.25
NEGATIVE = "negative"
NEAR_ZERO = "near-zero"


@dataclass(frozen=True)
class ItemFlags:
    """Per-item discrimination diagnostics (N,) and the flagged items' indices and reasons."""

    loading: np.ndarray
    spread: np.ndarray
    indices: np.ndarray
    reasons: tuple[str, ...]
    threshold: float
    constant: int = 0  # items every model answered alike: not judged (module docstring)

    @property
    def count(self) -> int:
        return int(self.indices.size)

    def mask(self, n_items: int) -> np.ndarray:
        """(N,) True for flagged items."""
        out = np.zeros(n_items, dtype=bool)
        out[self.indices] = True
        return out

    def by_item(self, item_ids: Sequence[str]) -> dict[str, str]:
        """{item id: reason} of the flagged items, in bank order."""
        return {item_ids[int(i)]: r for i, r in zip(self.indices, self.reasons)}

    def summary(self, item_ids: Sequence[str], n_items: int, show: int = 10) -> str:
        """One line for humans: how many, the share, by reason, the first ``show`` ids."""
        constant = (f"; {self.constant} answered alike by every model, not judged"
                    if self.constant else "")
        if not self.count:
            return (f"0 of {n_items} items flagged (discrimination ≤ 0 or logit s.d. < "
                    f"{self.threshold:g}){constant}")
        counts = {r: self.reasons.count(r) for r in (NEGATIVE, NEAR_ZERO)}
        ids = [item_ids[int(i)] for i in self.indices[:show]]
        more = f" … (+{self.count - show})" if self.count > show else ""
        return (f"{self.count} of {n_items} items flagged ({100 * self.count / n_items:.1f}%: "
                f"{counts[NEGATIVE]} negative, {counts[NEAR_ZERO]} near-zero discrimination, "
                f"logit s.d. < {self.threshold:g}){constant}; left out of anchor and adaptive "
                "selection: " + ", ".join(ids) + more)

    def to_json(self, item_ids: Sequence[str]) -> dict[str, object]:
        counts = {r: self.reasons.count(r) for r in (NEGATIVE, NEAR_ZERO)}
        return {"count": self.count, "threshold": self.threshold, **counts,
                "constant": self.constant, "items": self.by_item(item_ids)}


def _no_flags(n_items: int, threshold: float) -> ItemFlags:
    return ItemFlags(np.full(n_items, np.nan), np.full(n_items, np.nan),
                     np.zeros(0, dtype=int), (), threshold)


def flag_items(alpha: np.ndarray, theta: np.ndarray, responses: np.ndarray,
               item_tasks: Sequence[str], threshold: float = MIN_SPREAD) -> ItemFlags:
    """Loadings, spreads and flags of every item (see the module docstring)."""
    alpha = np.atleast_2d(np.asarray(alpha, dtype=float))
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    n_items = alpha.shape[0]
    if theta.shape[0] < 3:
        return _no_flags(n_items, threshold)
    logits = theta @ alpha.T  # (M, N): α_iᵀθ_m
    centred = logits - logits.mean(axis=0)
    spread = np.sqrt(np.mean(centred**2, axis=0))
    loading = np.full(n_items, np.nan)
    tasks = np.asarray(item_tasks, dtype=object)
    judged = np.zeros(n_items, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for task in dict.fromkeys(tasks.tolist()):
            cols = np.flatnonzero(tasks == task)
            accuracy = np.nanmean(responses[:, cols], axis=1)
            ok = ~np.isnan(accuracy)
            if ok.sum() < 3 or np.ptp(accuracy[ok]) == 0:
                continue  # nothing to judge this task's items by
            acc = accuracy[ok] - accuracy[ok].mean()
            part = logits[ok][:, cols] - logits[ok][:, cols].mean(axis=0)
            cov = acc @ part / ok.sum()
            sd = np.sqrt(np.mean(part**2, axis=0)) * np.sqrt(np.mean(acc**2))
            loading[cols] = np.where(sd > 0, cov / sd, 0.0)
            judged[cols] = True
    observed = ~np.isnan(responses)
    high = np.where(observed, responses, -np.inf).max(axis=0)
    low = np.where(observed, responses, np.inf).min(axis=0)
    constant = ~(high > low)  # never answered differently (or never answered)
    judged &= ~constant
    near_zero = judged & (spread < threshold)
    negative = judged & ~near_zero & (loading <= 0)
    indices = np.flatnonzero(near_zero | negative)
    reasons = tuple(NEAR_ZERO if near_zero[i] else NEGATIVE for i in indices)
    return ItemFlags(loading, spread, indices, reasons, threshold, int(constant.sum()))
