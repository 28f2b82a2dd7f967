"""Adaptive testing (irt/adaptive.py) and the estimators on a core + top-up union."""

from __future__ import annotations

import numpy as np
import pytest

from irt import (
    ESTIMATORS,
    AdaptiveTest,
    AnchorEstimator,
    AnchorSet,
    IRTError,
    ItemBank,
    ItemParams,
    select_anchors,
    union_anchors,
)
from irt.adaptive import select_batch


def _threshold_bank(a: list[float], b: list[float]) -> ItemBank:
    """A 2PL bank σ(a(θ − b)) whose population answers exactly where a(θ − b) > 0."""
    alpha = np.array(a)[:, None]
    beta = np.array(a) * np.array(b)
    theta = np.linspace(-2.0, 2.0, 41)[:, None]
    responses = ((theta @ alpha.T - beta) > 0).astype(float)
    n = beta.size
    return ItemBank(ItemParams(alpha, beta), tuple(f"t/{i}" for i in range(n)), ("t",) * n,
                    tuple(f"m{k}" for k in range(theta.shape[0])), theta, responses)


def _core(bank: ItemBank, indices: list[int]) -> AnchorSet:
    return AnchorSet(np.array(indices), tuple(bank.item_ids[i] for i in indices),
                     np.full(len(indices), 1.0 / len(indices)), "given", 0)


def test_the_next_item_is_the_most_informative_at_the_ability() -> None:
    # core: item 0 (b = 0). Answered right, θ̂ lies in (0, 1.5): of b = ±1.5, ±3 (same a)
    # the item at b = 1.5 is nearest, so the most informative (a²pq). Item 5 (a = −3 near
    # θ̂) would carry far more information, but it discriminates negatively: flagged.
    bank = _threshold_bank([1, 1, 1, 1, 1, -3], [0, -3, -1.5, 1.5, 3, 0.8])
    assert bank.flagged == {"t/5": "negative"}
    test = AdaptiveTest(bank, _core(bank, [0]), budget=2, batch=1, se_target=None,
                        estimator="p-irt")
    assert test.next_items({}) == ["t/0"]
    theta, _ = test.ability({"t/0": 1.0})
    assert 0 < theta[0] < 1.5
    a, b = bank.params.two_pl()
    p = 1 / (1 + np.exp(-a * (theta[0] - b)))
    info = a**2 * p * (1 - p)
    assert int(np.argmax(info)) == 5  # what an unflagged search would take
    assert test.next_items({"t/0": 1.0}) == ["t/3"]
    assert test.next_items({"t/0": 0.0}) == ["t/2"]  # θ̂ < 0: b = −1.5 is the nearest
    assert test.next_items({"t/0": 1.0, "t/3": 1.0}) == []  # budget spent


def test_batch_is_d_optimal_with_the_covariance_updated() -> None:
    alpha = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    prob = np.full(3, 0.5)
    # Σ = diag(1, 0.9): first (1, 0) (score 0.25 vs 0.225); then Σ₀₀ = 1 − 0.25/1.25 = 0.8
    # makes the other (1, 0) worth 0.2 < 0.225: the (0, 1) item is second
    assert select_batch(alpha, prob, np.diag([1.0, 0.9]), np.arange(3), 2) == [0, 2]
    # a wide first dimension: both (1, 0) items before the (0, 1) one
    assert select_batch(alpha, prob, np.diag([4.0, 0.25]), np.arange(3), 2) == [0, 1]
    with pytest.raises(IRTError, match="criterion"):
        select_batch(alpha, prob, np.eye(2), np.arange(3), 1, "e-optimal")


def _respond(bank: ItemBank, row: np.ndarray):  # noqa: ANN202
    lookup = {item: i for i, item in enumerate(bank.item_ids)}
    return lambda ids: {i: float(row[lookup[i]]) for i in ids}


def test_se_stopping_and_budget(small_bank, simulated) -> None:  # noqa: ANN001
    core = select_anchors(small_bank, 8, "kmeans-correctness", seed=0)
    row = simulated[0].scores[250]
    respond = _respond(small_bank, row)
    # run to the budget: core, then batches of 4 up to 20 items, no item twice
    full = AdaptiveTest(small_bank, core, budget=20, batch=4, se_target=None,
                        estimator="p-irt")
    answers = full.run(respond)
    assert len(answers) == 20 and set(core.item_ids) <= set(answers)
    assert not set(answers) & set(small_bank.flagged)
    core_only = {i: answers[i] for i in core.item_ids}
    first_batch = full.next_items(core_only)
    assert len(first_batch) == 4 and not set(first_batch) & set(core.item_ids)
    one_batch = {**core_only, **respond(first_batch)}
    se_core = full.estimate(core_only)[1]
    se_one = full.estimate(one_batch)[1]
    assert se_one < se_core
    # a target between the two: the test stops after exactly one top-up batch
    stop = AdaptiveTest(small_bank, core, budget=40, batch=4, se_target=se_one + 1e-9,
                        estimator="p-irt")
    got = stop.run(respond)
    assert len(got) == 12 and stop.done(got) and not stop.done(core_only)
    # a target met by the core alone: nothing is topped up
    easy = AdaptiveTest(small_bank, core, budget=40, batch=4, se_target=se_core + 1e-9,
                        estimator="p-irt")
    assert len(easy.run(respond)) == core.k
    # bad settings are refused, naming the fix
    with pytest.raises(IRTError, match="budget"):
        AdaptiveTest(small_bank, core, budget=5)
    with pytest.raises(IRTError, match="not in the bank"):
        full.done({"nope/1": 1.0})


def test_union_without_top_ups_is_the_static_path(small_bank, simulated) -> None:  # noqa: ANN001
    core = select_anchors(small_bank, 12, "kmeans-correctness", seed=1)
    union = union_anchors(small_bank, core, [])
    y = simulated[0].scores[240:260][:, core.indices]
    static, same = AnchorEstimator(small_bank, core), AnchorEstimator(small_bank, union)
    for name in ESTIMATORS:
        np.testing.assert_array_equal(static.predict(name, y)[0], same.predict(name, y)[0])
        np.testing.assert_array_equal(static.predict(name, y)[1], same.predict(name, y)[1])


def test_estimators_on_a_union(small_bank, simulated) -> None:  # noqa: ANN001
    core = select_anchors(small_bank, 10, "kmeans-correctness", seed=0)
    rows = simulated[0].scores[240:270]
    extra = [i for i in range(small_bank.n_items) if i not in set(core.indices)][:15]
    union = union_anchors(small_bank, core, [small_bank.item_ids[i] for i in extra])
    assert union.k == 25 and union.weights[10:].sum() == 0 and union.core_mask.sum() == 10
    est = AnchorEstimator(small_bank, union)
    y = rows[:, union.indices]
    # the anchor mean reads the core only: flipping the top-up answers leaves it unchanged
    flipped = y.copy()
    flipped[:, 10:] = 1 - flipped[:, 10:]
    np.testing.assert_array_equal(est.predict("mean", y)[0], est.predict("mean", flipped)[0])
    # p-IRT counts the top-ups as observed: it moves with them
    assert not np.allclose(est.predict("p-irt", y)[0], est.predict("p-irt", flipped)[0])
    # a union that covers the bank: IRT estimators and AIPW return the observed accuracy
    every = union_anchors(small_bank, core, range(small_bank.n_items))
    whole = AnchorEstimator(small_bank, every)
    truth = rows.mean(axis=1)
    for name in ("p-irt", "mp-irt", "aipw"):
        np.testing.assert_allclose(whole.predict(name, rows[:, every.indices])[0], truth,
                                   atol=1e-12)
    # top-ups help the model-based estimate: closer to the truth than the core alone
    core_est = AnchorEstimator(small_bank, core)
    err_core = np.abs(core_est.predict("p-irt", rows[:, core.indices])[0] - truth).mean()
    err_union = np.abs(est.predict("p-irt", y)[0] - truth).mean()
    assert err_union < err_core


def test_adaptive_beats_static_at_equal_budget_on_a_simulated_2pl(small_bank, simulated) -> None:  # noqa: ANN001
    """20 items: static k-means anchors vs a 10-item core + 10 by D-optimality (p-IRT)."""
    rows = simulated[0].scores[240:300]
    truth = rows.mean(axis=1)
    static = AnchorEstimator(small_bank, select_anchors(small_bank, 20, "kmeans-correctness"))
    static_err = np.abs(static.predict("p-irt", rows[:, static.anchors.indices])[0] - truth)
    core = select_anchors(small_bank, 10, "kmeans-correctness")
    test = AdaptiveTest(small_bank, core, budget=20, batch=5, se_target=None,
                        estimator="p-irt")
    adaptive_err = []
    for row, t in zip(rows, truth):
        answers = test.run(_respond(small_bank, row))
        assert len(answers) == 20
        adaptive_err.append(abs(test.estimate(answers)[0] - t))
    assert np.mean(adaptive_err) < np.mean(static_err)
