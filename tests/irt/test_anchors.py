from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from irt import SELECTORS, IRTError, load_anchors, select_anchors


@pytest.mark.parametrize("method", SELECTORS)
def test_selectors_are_valid_and_deterministic(small_bank, method: str, tmp_path) -> None:  # noqa: ANN001
    a = select_anchors(small_bank, 12, method, seed=4)
    b = select_anchors(small_bank, 12, method, seed=4)
    assert a.k == 12 and len(set(a.indices.tolist())) == 12
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.weights, b.weights)
    assert a.weights.sum() == pytest.approx(1.0) and (a.weights >= 0).all()
    a.save(tmp_path / "anchors.json")
    back = load_anchors(tmp_path / "anchors.json", small_bank)
    np.testing.assert_array_equal(back.indices, a.indices)
    np.testing.assert_array_equal(back.weights, a.weights)


def test_stratified_follows_task_shares(small_bank) -> None:  # noqa: ANN001
    a = select_anchors(small_bank, 30, "stratified", seed=0)
    tasks = [small_bank.item_tasks[i] for i in a.indices]
    assert sorted(tasks.count(t) for t in set(tasks)) == [10, 10, 10]


def test_kmeans_weights_are_cluster_shares(small_bank) -> None:  # noqa: ANN001
    a = select_anchors(small_bank, 10, "kmeans-irt", seed=0)
    # shares of 160 items: multiples of 1/160
    np.testing.assert_allclose(a.weights * 160, np.round(a.weights * 160))


def test_random_seed_changes_the_draw_and_bad_k_fails(small_bank) -> None:  # noqa: ANN001
    assert not np.array_equal(select_anchors(small_bank, 10, "random", 0).indices,
                              select_anchors(small_bank, 10, "random", 1).indices)
    with pytest.raises(IRTError, match="k = 0"):
        select_anchors(small_bank, 0, "random")
    with pytest.raises(IRTError, match="Unknown anchor selector"):
        select_anchors(small_bank, 5, "best")


@pytest.mark.parametrize("method", ["kmeans-irt", "fisher", "random"])
def test_extended_anchors_keep_the_originals_and_add_exactly_extra(small_bank, method) -> None:  # noqa: ANN001
    from irt import AnchorEstimator, extend_anchors

    base = select_anchors(small_bank, 15, method, seed=3)
    wider = extend_anchors(small_bank, base, 20)
    assert set(base.item_ids) < set(wider.item_ids)
    assert wider.k == 35 and len(set(wider.item_ids)) == 35
    assert wider.item_ids == extend_anchors(small_bank, base, 20).item_ids  # deterministic
    assert np.isclose(wider.weights.sum(), 1.0)
    # asking for more than the bank has stops at the whole bank
    assert extend_anchors(small_bank, base, 10_000).k == small_bank.n_items
    with pytest.raises(IRTError, match="extra"):
        extend_anchors(small_bank, base, 0)
    # more items, smaller standard error for the same answers' ability
    truth = small_bank.responses[0]
    est_small = AnchorEstimator(small_bank, base)
    est_wide = AnchorEstimator(small_bank, wider)
    _, se_small = est_small.predict("p-irt", truth[base.indices][None])
    _, se_wide = est_wide.predict("p-irt", truth[wider.indices][None])
    assert se_wide[0] < se_small[0]


def planted_truth_a() -> np.ndarray:
    """The simulated discriminations behind :func:`planted`."""
    from tests.irt.conftest import simulate_2pl

    return simulate_2pl(150, 60, seed=5)[2]


@pytest.fixture(scope="module")
def planted(make_2pl):  # noqa: ANN001, ANN201
    """A calibrated bank with item 7 answered backwards (better models fail it) and item 12
    answered right by every model (its α is not identified: not judged)."""
    from irt import ResponseMatrix, calibrate

    matrix = make_2pl(150, 60, seed=5)[0]
    scores = matrix.scores.copy()
    scores[:, 7] = 1 - scores[:, 7]
    scores[:, 12] = 1.0
    planted = ResponseMatrix(scores, matrix.model_ids, matrix.item_ids, matrix.item_tasks)
    return calibrate(planted, model="mirt", dims=2, seed=0)


def test_planted_items_are_flagged_with_their_reason(planted, tmp_path) -> None:  # noqa: ANN001
    from irt import load_bank

    ids = planted.item_ids
    assert planted.flagged.get(ids[7]) == "negative"
    assert ids[12] not in planted.flagged and planted.flags.constant == 1
    # anything else flagged is a weak item of the simulation (true a < 0.6, median 1)
    true_a = planted_truth_a()
    assert all(true_a[ids.index(i)] < 0.6 for i in planted.flagged if i != ids[7])
    assert planted.flags.loading[7] < 0 < planted.flags.loading[3]
    saved = planted.save(tmp_path / "bank")
    header = json.loads((saved / "bank.json").read_text())
    assert header["flagged"]["items"] == planted.flagged
    assert header["flagged"]["negative"] >= 1 and header["flagged"]["constant"] == 1
    assert load_bank(saved).flagged == planted.flagged  # recomputed from the arrays
    items = pd.read_csv(saved / "items.csv")
    assert items.loc[7, "flag"] == "negative" and items.loc[12, "flag"] != "negative"


def test_near_zero_discrimination_is_the_logit_spread_threshold() -> None:
    from irt import MIN_SPREAD, ItemBank, ItemParams

    theta = np.linspace(-2, 2, 41)[:, None]  # s.d. 1.2
    alpha = np.array([[1.0], [0.5 * MIN_SPREAD / theta.std()], [2 * MIN_SPREAD / theta.std()]])
    responses = (theta @ alpha.T > 0).astype(float)
    bank = ItemBank(ItemParams(alpha, np.zeros(3)), ("t/0", "t/1", "t/2"), ("t",) * 3,
                    tuple(f"m{k}" for k in range(41)), theta, responses)
    np.testing.assert_allclose(bank.flags.spread, alpha[:, 0] * theta.std())
    assert bank.flagged == {"t/1": "near-zero"}
    strict = ItemBank(bank.params, bank.item_ids, bank.item_tasks, bank.model_ids, theta,
                      responses, {"flag_threshold": 3 * MIN_SPREAD})
    assert strict.flagged == {"t/1": "near-zero", "t/2": "near-zero"}


@pytest.mark.parametrize("method", SELECTORS)
def test_no_selector_picks_a_flagged_item(planted, method: str) -> None:  # noqa: ANN001
    flagged = set(planted.flagged)
    for k in (12, planted.selectable.size):
        anchors = select_anchors(planted, k, method, seed=0)
        assert not flagged & set(anchors.item_ids) and anchors.k == k
        assert anchors.weights.sum() == pytest.approx(1.0) and (anchors.weights >= 0).all()
    with pytest.raises(IRTError, match="unflagged"):
        select_anchors(planted, planted.selectable.size + 1, method)


def test_flagged_items_weigh_on_their_nearest_anchor(planted) -> None:  # noqa: ANN001
    # kmeans-irt shares over the unflagged items, then 1/60 per flagged item moved to the
    # anchor nearest it in correctness: weights are multiples of 1/60 summing to 1
    assert planted.flags.count >= 1
    anchors = select_anchors(planted, 10, "kmeans-irt", seed=0)
    np.testing.assert_allclose(anchors.weights * 60, np.round(anchors.weights * 60), atol=1e-9)
    from irt import extend_anchors

    wider = extend_anchors(planted, anchors, 1000)
    assert wider.k == planted.selectable.size and not set(planted.flagged) & set(wider.item_ids)


def test_small_or_flat_populations_flag_nothing(small_bank) -> None:  # noqa: ANN001
    from irt import flag_items

    # the simulated 2PL has lognormal discriminations: nothing to flag
    assert small_bank.flags.count == 0
    two = flag_items(small_bank.params.alpha, small_bank.theta[:2],
                     small_bank.responses[:2], small_bank.item_tasks)
    assert two.count == 0
