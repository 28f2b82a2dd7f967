"""Each estimator on a case small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from irt import (
    AnchorEstimator,
    AnchorSet,
    ItemBank,
    ItemParams,
    ResponseMatrix,
    estimate_accuracy,
)


def _bank(alpha: np.ndarray, beta: np.ndarray, responses: np.ndarray, theta: np.ndarray,
          validation: dict | None = None) -> ItemBank:
    n_items = beta.size
    return ItemBank(ItemParams(alpha, beta), tuple(f"t/{i}" for i in range(n_items)),
                    ("t",) * n_items, tuple(f"m{k}" for k in range(responses.shape[0])),
                    theta, responses, {}, validation or {})


def _anchors(indices: list[int], weights: list[float]) -> AnchorSet:
    return AnchorSet(np.array(indices), tuple(f"t/{i}" for i in indices), np.array(weights),
                     "given", 0)


def test_weighted_mean() -> None:
    bank = _bank(np.ones((4, 1)), np.zeros(4), np.zeros((3, 4)), np.zeros((3, 1)))
    est = AnchorEstimator(bank, _anchors([0, 1, 2], [0.5, 0.25, 0.25]))
    value, se = est.predict("mean", np.array([[1.0, 0.0, 1.0]]))
    assert value[0] == pytest.approx(0.75)
    assert se[0] == pytest.approx(np.sqrt((0.25 + 0.0625 + 0.0625) * 0.75 * 0.25))
    # an unanswered anchor drops out and the weights are renormalised
    value, _ = est.predict("mean", np.array([[np.nan, 0.0, 1.0]]))
    assert value[0] == pytest.approx(0.5)


def _flat_bank() -> ItemBank:
    """α = 0: P_i = σ(−β_i) whatever θ, so p-IRT is plain arithmetic."""
    beta = np.array([0.0, 0.0, 0.0, np.log(3.0)])  # P = 0.5, 0.5, 0.5, 0.25
    rng = np.random.default_rng(0)
    return _bank(np.zeros((4, 1)), beta, rng.integers(0, 2, (6, 4)).astype(float),
                 rng.normal(size=(6, 1)))


def test_p_irt_by_hand() -> None:
    est = AnchorEstimator(_flat_bank(), _anchors([0, 1], [0.5, 0.5]))
    value, se = est.predict("p-irt", np.array([[1.0, 0.0]]))
    # (2/4)·mean(1, 0) + (2/4)·mean(P_2, P_3) = 0.25 + 0.5·0.375
    assert value[0] == pytest.approx(0.4375)
    # θ carries no information (α = 0): only the Bernoulli noise of the 2 unseen items
    assert se[0] == pytest.approx(np.sqrt((0.25 + 0.1875) / 16))


def test_gp_irt_blend_weight_by_hand() -> None:
    bank = _flat_bank()
    heldout = np.array([4, 5])
    train = np.arange(4)
    bank = _bank(bank.params.alpha, bank.params.beta, bank.responses, bank.theta,
                 {"alpha": bank.params.alpha, "beta": bank.params.beta,
                  "theta_train": bank.theta[train], "train": train, "heldout": heldout})
    anchors = _anchors([0, 1], [0.5, 0.5])
    est = AnchorEstimator(bank, anchors)
    y_h = bank.responses[heldout][:, [0, 1]]
    truth = bank.responses[heldout].mean(axis=1)
    p_irt = 0.5 * y_h.mean(axis=1) + 0.5 * 0.375
    b2 = np.mean((p_irt - truth) ** 2)
    s2 = np.mean((y_h.mean(axis=1) - truth) ** 2)
    lam = b2 / (b2 + s2)
    assert est.gp_lambda == pytest.approx(lam)
    y = np.array([[1.0, 1.0]])
    value, se = est.predict("gp-irt", y)
    assert value[0] == pytest.approx(lam * 1.0 + (1 - lam) * (0.5 + 0.5 * 0.375))
    # the IRT s.e. is widened by the held-out misfit: b² minus the mean Laplace s.e.²
    laplace2 = (0.25 + 0.1875) / 16
    excess = max(0.0, b2 - laplace2)
    _, p_se = est.predict("p-irt", y)
    assert p_se[0] == pytest.approx(np.sqrt(laplace2 + excess))
    assert se[0] == pytest.approx(np.sqrt(lam**2 * 0.0 + (1 - lam) ** 2 * (laplace2 + excess)))


def test_mp_irt_with_endpoints_at_zero_ability() -> None:
    # endpoints both at θ = 0: θ̃ = Σλθ_k = 0 whatever λ, so P = σ(0) = 0.5 off the anchors
    bank = _bank(np.ones((5, 1)), np.zeros(5), np.zeros((3, 5)),
                 np.array([[0.0], [0.0], [1.0]]))
    est = AnchorEstimator(bank, _anchors([0], [1.0]))
    value, se = est.predict("mp-irt", np.array([[1.0]]), endpoints=np.array([[0, 1]]))
    assert value[0] == pytest.approx(0.2 * 1.0 + 0.8 * 0.5)
    assert se[0] == pytest.approx(np.sqrt(4 * 0.25 / 25))
    # gmp-IRT is the data-chosen blend of the anchor mean and mp-IRT
    g, _ = est.predict("gmp-irt", np.array([[1.0]]), endpoints=np.array([[0, 1]]))
    lam = est.gmp_lambda
    assert 0.0 <= lam <= 1.0
    assert g[0] == pytest.approx(lam * 1.0 + (1 - lam) * value[0])


def test_mp_irt_recovers_a_merge_of_its_endpoints() -> None:
    # a model whose ability is the midpoint of two endpoints: its estimate is close to
    # the truth σ-curve average, and λ ≈ (0.5, 0.5)
    rng = np.random.default_rng(3)
    alpha = rng.normal(1.5, 0.2, size=(400, 1))
    beta = rng.normal(size=400)
    params = ItemParams(alpha, beta)
    theta = np.array([[-1.0], [1.5], [0.0]])
    bank = _bank(alpha, beta, (rng.random((3, 400)) < params.prob(theta)).astype(float), theta)
    anchors = _anchors(list(range(0, 400, 4)), [1 / 100] * 100)
    target = np.array([[0.25]])
    y = (rng.random((1, 100)) < params.subset(anchors.indices).prob(target)).astype(float)
    value, se = AnchorEstimator(bank, anchors).predict("mp-irt", y, np.array([[0, 1]]))
    truth = params.prob(target).mean()
    assert abs(value[0] - truth) < 3 * se[0]
    assert abs(value[0] - truth) < 0.05


def test_aipw_by_hand() -> None:
    # every bank model answers alike: ridge predicts each item's population mean
    pop = np.tile([1.0, 0.0, 1.0, 1.0], (5, 1))
    bank = _bank(np.ones((4, 1)), np.zeros(4), pop, np.zeros((5, 1)))
    est = AnchorEstimator(bank, _anchors([0, 1], [0.5, 0.5]))
    value, se = est.predict("aipw", np.array([[0.0, 0.0]]))
    # ȳ_S + (mean_rest f̂ − mean_S f̂)/(1 + n/N) = 0 + (1 − 0.5)/1.5
    assert value[0] == pytest.approx(1 / 3)
    # residuals y − f̂_S = (−1, 0): weighted variance 0.125 × n/(n − 1) = 0.25
    assert se[0] == pytest.approx(0.5)


def test_estimate_accuracy_api_reports_items_used(small_bank, simulated) -> None:  # noqa: ANN001
    matrix = simulated[0].select_models(range(240, 244))
    anchors = AnchorSet(np.arange(0, 160, 8), tuple(small_bank.item_ids[i]
                                                    for i in range(0, 160, 8)),
                        np.full(20, 0.05), "given", 0)
    holes = matrix.scores.copy()
    holes[0, 0] = np.nan  # model 0 skipped its first anchor
    partial = ResponseMatrix(holes, matrix.model_ids, matrix.item_ids, matrix.item_tasks)
    for name in ("mean", "p-irt", "gp-irt", "mp-irt", "gmp-irt", "aipw"):
        results = estimate_accuracy(small_bank, partial, name, anchors)
        assert [r.items_used for r in results] == [19, 20, 20, 20]
        for r in results:
            assert 0.0 <= r.estimate <= 1.0 and 0.0 < r.stderr < 0.3
    by_parent = estimate_accuracy(small_bank, matrix.select_models([0]), "mp-irt", anchors,
                                  endpoints={"model-240": ["model-0", "model-1"]})
    assert by_parent[0].items_used == 20


def test_wider_ability_prior_lets_a_perfect_model_score_higher(small_bank) -> None:  # noqa: ANN001
    anchors = AnchorSet(np.arange(0, 160, 16), tuple(small_bank.item_ids[i]
                                                     for i in range(0, 160, 16)),
                        np.full(10, 0.1), "given", 0)
    perfect = np.ones((1, 10))
    tight, _ = AnchorEstimator(small_bank, anchors).predict("p-irt", perfect)
    wide, _ = AnchorEstimator(small_bank, anchors, prior_inflation=4.0).predict("p-irt",
                                                                                perfect)
    assert wide[0] > tight[0] + 0.01
