from __future__ import annotations

import numpy as np
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
