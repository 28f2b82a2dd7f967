"""Parameter recovery on a known 2PL, engine agreement, bank round-trip, recalibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from irt import IRTError, ItemBankError, calibrate, load_bank, recalibrate
from irt.engine_pyirt import fit_py_irt
from irt.engine_scipy import fit_joint_map


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def test_scipy_recovers_2pl_parameters(simulated) -> None:  # noqa: ANN001
    matrix, theta, a, b = simulated
    bank = calibrate(matrix, model="2pl", seed=0)
    a_hat, b_hat = bank.params.two_pl()
    assert _corr(bank.theta[:, 0], theta) > 0.95
    assert _corr(b_hat, b) > 0.95
    assert _corr(a_hat, a) > 0.75
    assert bank.dims == 1 and bank.metadata["engine"] == "scipy"


def test_py_irt_recovers_2pl_and_agrees_with_scipy(make_2pl) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    matrix, theta, a, b = make_2pl(200, 120, seed=2)
    py = fit_py_irt(matrix.scores, 1, epochs=600, seed=0)
    sp = fit_joint_map(matrix.scores, 1)
    a_py, b_py = py.params.two_pl()
    assert _corr(py.theta[:, 0], theta) > 0.95
    assert _corr(b_py, b) > 0.9
    # the two engines: same probabilities within a few points, same item ordering
    p_py, p_sp = py.params.prob(py.theta), sp.params.prob(sp.theta)
    assert np.mean(np.abs(p_py - p_sp)) < 0.04
    assert _corr(b_py, sp.params.two_pl()[1]) > 0.95


def test_py_irt_custom_multidimensional_model_agrees_with_scipy(make_2pl) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    matrix = make_2pl(150, 100, seed=3)[0]
    py = fit_py_irt(matrix.scores, 3, epochs=500, seed=0)
    sp = fit_joint_map(matrix.scores, 3)
    assert py.params.alpha.shape == (100, 3) and py.theta.shape == (150, 3)
    p_py, p_sp = py.params.prob(py.theta), sp.params.prob(sp.theta)
    assert np.mean(np.abs(p_py - p_sp)) < 0.06
    # both predict each model's accuracy to within a few points
    acc = matrix.accuracies()
    assert np.mean(np.abs(p_py.mean(1) - acc)) < 0.03  # SVI means shrink a little
    assert np.mean(np.abs(p_sp.mean(1) - acc)) < 0.02


def test_missing_entries_are_ignored_not_zero(make_2pl) -> None:  # noqa: ANN001
    matrix, theta, _, b = make_2pl(250, 120, seed=4)
    rng = np.random.default_rng(0)
    holes = matrix.scores.copy()
    holes[rng.random(holes.shape) < 0.3] = np.nan
    fit = fit_joint_map(holes, 1)
    assert _corr(fit.theta[:, 0], theta) > 0.93
    assert _corr(fit.params.beta / fit.params.alpha[:, 0], b) > 0.9
    # a zero-filled fit would push abilities down; the masked one keeps the mean accuracy
    p = fit.params.prob(fit.theta)
    observed = ~np.isnan(holes)
    assert abs(p[observed].mean() - holes[observed].mean()) < 0.01


def test_dimension_chosen_on_heldout_models(simulated) -> None:  # noqa: ANN001
    bank = calibrate(simulated[0], model="mirt", dim_candidates=(1, 3), seed=0)
    errors = bank.metadata["dimension_selection_mae_pp"]
    assert set(errors) == {"1", "3"}
    best = min(errors.values())
    assert bank.dims == min(int(d) for d, e in errors.items() if e <= best + 0.25)
    assert bank.validation["heldout"].size == 60


def test_bank_round_trip_is_identical(small_bank, tmp_path) -> None:  # noqa: ANN001
    small_bank.save(tmp_path / "bank")
    back = load_bank(tmp_path / "bank")
    np.testing.assert_array_equal(back.params.alpha, small_bank.params.alpha)
    np.testing.assert_array_equal(back.params.beta, small_bank.params.beta)
    np.testing.assert_array_equal(back.theta, small_bank.theta)
    np.testing.assert_array_equal(back.responses, small_bank.responses)
    assert back.item_ids == small_bank.item_ids and back.model_ids == small_bank.model_ids
    assert back.metadata == json.loads(json.dumps(small_bank.metadata))
    for key, value in small_bank.validation.items():
        np.testing.assert_array_equal(back.validation[key], value)
    header = json.loads((tmp_path / "bank" / "bank.json").read_text())
    assert header["format"] == "merge3-irt-bank-v1"
    assert (tmp_path / "bank" / "items.csv").read_text().startswith("item,task,beta,alpha_1")


def test_broken_banks_are_reported(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ItemBankError, match="bank.json is missing"):
        load_bank(tmp_path)
    (tmp_path / "bank.json").write_text('{"format": "merge3-irt-bank-v0"}')
    np.savez(tmp_path / "params.npz", alpha=np.zeros((1, 1)))
    with pytest.raises(ItemBankError, match="expected 'merge3-irt-bank-v1'"):
        load_bank(tmp_path)


def test_recalibration_adds_models_and_follows_stronger_ones(simulated) -> None:  # noqa: ANN001
    matrix, theta, _, _ = simulated
    order = np.argsort(theta)
    weak, strong = order[:200], order[250:]
    bank = calibrate(matrix.select_models(weak), model="2pl", seed=0)
    new = matrix.select_models(strong[:25])
    recal = recalibrate(bank, new)
    assert len(recal.model_ids) == 225 and recal.model_ids[-25:] == new.model_ids
    assert recal.metadata["recalibrations"][0]["added_models"] == 25
    assert recal.validation["train"].size == bank.validation["train"].size + 25
    # the refit places the strong models above the old population
    assert recal.theta[-25:, 0].mean() > recal.theta[:200, 0].mean() + 0.8
    with pytest.raises(IRTError, match="share no item"):
        recalibrate(bank, new.aligned_to(["other/1"]))


def test_bank_is_logged_as_an_mlflow_artifact(small_bank, tmp_path) -> None:  # noqa: ANN001
    import mlflow

    small_bank.save(tmp_path / "bank")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("irt-test",
                                          artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        small_bank.log_to_mlflow(tmp_path / "bank")
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                artifact_path="item_bank",
                                                dst_path=str(tmp_path / "down"))
    back = load_bank(local)
    np.testing.assert_array_equal(back.params.alpha, small_bank.params.alpha)
