"""Task vectors are accumulated gradients (Zhou, Crisostomi et al. 2025)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from merge3.analysis import finetune_with_gradient_log, full_batch_gradient
from merge3.zoo.digits import DigitsMLP, load_digits_data


@pytest.fixture(scope="module")
def setup():
    """A "pretrained" base (digits 0-4) and the full 10-class task to fine-tune on."""
    data = load_digits_data()
    torch.manual_seed(0)
    x, y = data.x_train.double(), data.y_train
    seen = y < 5
    base, _ = finetune_with_gradient_log(DigitsMLP(hidden=16, depth=2).double(),
                                         nn.functional.cross_entropy, x[seen], y[seen],
                                         learning_rate=0.1, epochs=10, batch_size=32)
    return base, x, y


def test_one_full_batch_step_is_minus_lr_times_gradient(setup) -> None:
    model, x, y = setup
    lr = 0.05
    gradient = full_batch_gradient(model, nn.functional.cross_entropy, x, y)
    tuned, comparison = finetune_with_gradient_log(
        model, nn.functional.cross_entropy, x, y, learning_rate=lr, epochs=1)
    for name, value in gradient.items():
        np.testing.assert_allclose(comparison.task_vector[name], -lr * value.numpy(),
                                   rtol=1e-12, atol=1e-15)
    assert comparison.cosine_to_accumulated_gradient == pytest.approx(1.0, abs=1e-12)
    assert comparison.epoch_shares == pytest.approx([1.0])
    # the original model is untouched
    assert not torch.equal(tuned.layers[0].weight, model.layers[0].weight)


def test_sgd_task_vector_is_the_accumulated_gradient(setup) -> None:
    model, x, y = setup
    _, comparison = finetune_with_gradient_log(
        model, nn.functional.cross_entropy, x, y, learning_rate=0.05, epochs=5, batch_size=50)
    assert comparison.cosine_to_accumulated_gradient == pytest.approx(1.0, abs=1e-10)
    for name, tau in comparison.task_vector.items():
        np.testing.assert_allclose(tau, -0.05 * comparison.accumulated_gradient[name],
                                   atol=1e-12)
    assert sum(comparison.epoch_shares) == pytest.approx(1.0, abs=1e-10)
    # fine-tuning from a pretrained base: the first epoch dominates the task vector
    assert comparison.first_epoch_share == max(comparison.epoch_shares)
    assert comparison.first_epoch_share > 0.4
    assert 0.0 < comparison.cosine_to_first_epoch_gradient < 1.0


def test_adam_task_vector_is_not_exactly_a_gradient(setup) -> None:
    model, x, y = setup
    _, comparison = finetune_with_gradient_log(
        model, nn.functional.cross_entropy, x, y, learning_rate=1e-3, epochs=3,
        batch_size=100, optimizer="adam")
    assert 0.0 < comparison.cosine_to_accumulated_gradient < 0.999
    assert sum(comparison.epoch_shares) == pytest.approx(1.0, abs=1e-10)
    assert set(comparison.per_layer_cosine) == {n for n, _ in model.named_parameters()}
