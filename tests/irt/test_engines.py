"""The joint-MAP engine's optimiser: known minima, the loss-change stop, warm starts, auto-D."""

from __future__ import annotations

import numpy as np
import pytest

from irt import IRTError, ResponseMatrix, calibrate
from irt.calibrate import _start_from
from irt.engine_scipy import _JointObjective, fit_joint_map, initial_values, pad_start
from irt.lbfgs import minimize_lbfgs


def _rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = x
    value = (1 - a) ** 2 + 100 * (b - a**2) ** 2
    grad = np.array([-2 * (1 - a) - 400 * a * (b - a**2), 200 * (b - a**2)])
    return float(value), grad


def simulate_mirt(n_models: int, n_items: int, dims: int, seed: int = 0,
                  scale: float = 1.2) -> tuple[ResponseMatrix, np.ndarray]:
    """Binary responses from σ(α·θ − β), θ ~ N(0, I), α ~ N(0, scale²), β ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    theta = rng.standard_normal((n_models, dims))
    alpha = scale * rng.standard_normal((n_items, dims))
    beta = rng.standard_normal(n_items)
    p = 1.0 / (1.0 + np.exp(-(theta @ alpha.T - beta)))
    y = (rng.random(p.shape) < p).astype(float)
    matrix = ResponseMatrix(y, [f"m{m}" for m in range(n_models)],
                            [f"t/{i}" for i in range(n_items)], ["t"] * n_items)
    return matrix, p


def test_lbfgs_finds_the_minimum_of_an_ill_conditioned_quadratic() -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    a = q @ np.diag(np.logspace(0, 3, 40)) @ q.T  # condition number 1000
    b = rng.standard_normal(40)
    result = minimize_lbfgs(lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b), np.zeros(40),
                            rtol=0.0, gtol=1e-6)
    assert result.converged and result.reason == "gradient"
    # |x − x*| ≤ |∇f| / λ_min = 1e-6 per coordinate at most
    np.testing.assert_allclose(result.x, np.linalg.solve(a, b), atol=2e-6)


def test_lbfgs_solves_rosenbrock_and_reports_a_stop_at_max_iter() -> None:
    result = minimize_lbfgs(_rosenbrock, np.array([-1.2, 1.0]), rtol=0.0, gtol=1e-8)
    assert result.converged
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-5)
    cut = minimize_lbfgs(_rosenbrock, np.array([-1.2, 1.0]), max_iter=3, rtol=0.0)
    assert not cut.converged and cut.reason == "max_iter" and cut.iterations == 3
    assert cut.fun < _rosenbrock(np.array([-1.2, 1.0]))[0]  # every accepted step descends


def test_objective_gradient_matches_finite_differences_with_missing_entries() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random((6, 9)) < 0.5).astype(float)
    y[rng.random(y.shape) < 0.3] = np.nan
    objective = _JointObjective(y, 2, 2.0, 3.0, None)
    x = rng.standard_normal(6 * 2 + 9 * 3)
    value, grad = objective(x)
    theta, alpha, beta = objective.unpack(x)
    z = theta @ alpha.T - beta
    seen = ~np.isnan(y)
    expected = (np.sum((np.logaddexp(0, z) - np.nan_to_num(y) * z)[seen]) + 0.5 * np.sum(theta**2)
                + 0.5 * np.sum(alpha**2) / 4 + 0.5 * np.sum(beta**2) / 9)
    assert value == pytest.approx(expected, rel=1e-12)
    eye = np.eye(x.size)
    numeric = [(objective(x + 1e-6 * e)[0] - objective(x - 1e-6 * e)[0]) / 2e-6 for e in eye]
    np.testing.assert_allclose(grad, numeric, atol=1e-6)


def test_loss_change_stop_lands_on_the_lbfgsb_optimum() -> None:
    matrix, _ = simulate_mirt(200, 300, 2, seed=2)
    ours = fit_joint_map(matrix.scores, 2)
    reference = fit_joint_map(matrix.scores, 2, optimizer="scipy-lbfgsb")
    assert ours.converged and ours.iterations < 2000  # the loss-change stop, not max_iter
    # the stop is loose on digits that change no prediction, tight on those that do
    assert ours.neg_log_posterior <= reference.neg_log_posterior * (1 + 1e-5)
    p_ours, p_ref = ours.params.prob(ours.theta), reference.params.prob(reference.theta)
    assert np.mean(np.abs(p_ours - p_ref)) < 0.003
    assert np.max(np.abs(p_ours.mean(axis=1) - p_ref.mean(axis=1))) < 0.002  # accuracies


def test_loss_change_stop_fires_before_the_gradient_is_small() -> None:
    matrix, _ = simulate_mirt(120, 200, 2, seed=3)
    objective = _JointObjective(matrix.scores, 2, 2.0, 3.0, None)
    theta, alpha, beta = initial_values(matrix.scores, 2)
    x0 = np.concatenate([theta.ravel(), alpha.ravel(), beta])
    loose = minimize_lbfgs(objective, x0, rtol=1e-6, gtol=0.0)
    tight = minimize_lbfgs(objective, x0, rtol=1e-10, gtol=0.0)
    assert loose.reason == "loss change" and loose.iterations < tight.iterations
    # stopped when the loss moved < 1e-6 relative per iteration: close to the tight optimum
    assert (loose.fun - tight.fun) / abs(tight.fun) < 1e-4


def test_warm_start_from_the_validation_fit_reaches_the_cold_optimum() -> None:
    matrix, _ = simulate_mirt(250, 300, 2, seed=4)
    scores = matrix.scores
    train = np.arange(200)
    part = fit_joint_map(scores[train], 2)
    start = _start_from(part.params, part.theta, scores, train)  # what calibrate() does
    warm = fit_joint_map(scores, 2, init=start)
    cold = fit_joint_map(scores, 2)
    assert warm.evaluations < cold.evaluations  # the point of warm-starting
    assert warm.neg_log_posterior == pytest.approx(cold.neg_log_posterior, rel=2e-5)
    p_warm, p_cold = warm.params.prob(warm.theta), cold.params.prob(cold.theta)
    assert np.mean(np.abs(p_warm - p_cold)) < 0.005


def test_pad_start_keeps_the_fit_and_adds_small_new_dimensions() -> None:
    theta, alpha, beta = np.ones((4, 2)), np.ones((5, 2)), np.arange(5.0)
    t3, a3, b3 = pad_start(theta, alpha, beta, 3, seed=0)
    assert t3.shape == (4, 3) and a3.shape == (5, 3)
    np.testing.assert_array_equal(t3[:, :2], theta)
    np.testing.assert_array_equal(b3, beta)
    assert 0 < np.abs(a3[:, 2]).max() < 1  # not zero: a zero column would never move
    with pytest.raises(IRTError, match="cannot pad a D = 2 start down to D = 1"):
        pad_start(theta, alpha, beta, 1)


def test_fit_refuses_fixed_items_without_a_start_and_unknown_optimizers() -> None:
    scores = simulate_mirt(20, 10, 1)[0].scores
    with pytest.raises(IRTError, match="fix_items needs init"):
        fit_joint_map(scores, 1, fix_items=True)
    with pytest.raises(IRTError, match="Unknown optimizer 'newton'"):
        fit_joint_map(scores, 1, optimizer="newton")


def test_fit_leaves_the_blas_thread_count_as_it_found_it() -> None:
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    fit_joint_map(simulate_mirt(30, 40, 2)[0].scores, 2)
    after = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert after == before


@pytest.mark.parametrize("true_dims", [1, 3])
def test_auto_dimension_picks_the_dimension_the_population_was_drawn_from(
        true_dims: int) -> None:
    matrix, _ = simulate_mirt(300, 500, true_dims, seed=10 + true_dims)
    bank = calibrate(matrix, dim_candidates=(1, 3, 6), seed=0)
    errors = bank.metadata["dimension_selection_mae_pp"]
    assert bank.dims == true_dims, errors
    if true_dims == 3:  # D = 1 misses two of the three abilities: clearly worse
        assert errors["1"] > errors["3"] + 0.25
