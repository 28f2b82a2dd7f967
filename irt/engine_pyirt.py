"""Calibration with py-irt 0.7.1 (Pyro SVI, hierarchical priors).

Stock py-irt ``multidim_2pl`` uses positive per-dimension discriminations and per-dimension
difficulties (σ(Σ_d γ_id(θ_d − b_id))), not the σ(α_iᵀθ − β_i) form of tinyBenchmarks
(Polo et al. 2024) that our estimators are written for. So this module registers its own
py-irt model, ``merge3_mirt``, in py-irt's model registry and trains it with py-irt's
``IrtModelTrainer``. D = 1 uses the stock ``2pl`` model (σ(a(θ − b)), converted to α = a,
β = a·b). py-irt is imported lazily: a missing install fails only here, with the fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from irt.errors import IRTError
from irt.params import ItemParams

__all__ = ["PyIrtFit", "PyIrtEngine", "fit_py_irt", "py_irt_engine", "MODEL_NAME"]

MODEL_NAME = "merge3_mirt"
_START_NAME = "merge3_start"
_REGISTERED = False


@dataclass(frozen=True, slots=True)
class PyIrtFit:
    params: ItemParams
    theta: np.ndarray  # (M, D)


def _register() -> None:
    """Register the α·θ − β model and the warm-start initializer with py-irt (once)."""
    global _REGISTERED
    if _REGISTERED:
        return
    try:
        import pyro
        import pyro.distributions as dist
        import torch
        from py_irt.initializers import IrtInitializer, register
        from py_irt.models.abstract_model import IrtModel
        from torch.distributions import constraints
    except ImportError as err:  # pragma: no cover - exercised only without py-irt
        from merge3.errors import MissingDependencyError

        raise MissingDependencyError(
            f"The py-irt engine needs py-irt 0.7.1 and pyro-ppl ({err}).",
            fix="pip install py-irt==0.7.1 pyro-ppl==1.9.2 (Python < 3.12), "
                "or calibrate with --engine scipy.") from None

    @IrtModel.register(MODEL_NAME)
    class AlphaThetaMinusBeta(IrtModel):
        """σ(α_iᵀθ_s − β_i) with hierarchical priors on item parameters (tinyBenchmarks)."""

        def __init__(self, *, num_items: int, num_subjects: int, dims: int = 2,
                     verbose: bool = False, device: str = "cpu", **kwargs: object) -> None:
            super().__init__(num_items=num_items, num_subjects=num_subjects,
                             verbose=verbose, device=device)
            self.dims = dims

        def get_model(self):  # noqa: ANN201 - Pyro callables
            return self.model_hierarchical

        def get_guide(self):  # noqa: ANN201
            return self.guide_hierarchical

        def model_hierarchical(self, subjects, items, obs):  # noqa: ANN001, ANN201
            zero, one = torch.tensor(0.0), torch.tensor(1.0)
            mu_b = pyro.sample("mu_b", dist.Normal(zero, torch.tensor(10.0)))
            u_b = pyro.sample("u_b", dist.Gamma(one, one))
            u_a = pyro.sample("u_a", dist.Gamma(one, one))
            with pyro.plate("thetas", self.num_subjects):
                theta = pyro.sample("theta", dist.Normal(torch.zeros(self.dims), 1.0)
                                    .to_event(1))
            with pyro.plate("items", self.num_items):
                beta = pyro.sample("beta", dist.Normal(mu_b, 1.0 / u_b))
                alpha = pyro.sample("alpha", dist.Normal(torch.zeros(self.dims), 1.0 / u_a)
                                    .to_event(1))
            with pyro.plate("observe_data", obs.size(0)):
                logits = (alpha[items] * theta[subjects]).sum(-1) - beta[items]
                pyro.sample("obs", dist.Bernoulli(logits=logits), obs=obs)

        def guide_hierarchical(self, subjects, items, obs):  # noqa: ANN001, ANN201
            pos = constraints.positive
            loc_mu_b = pyro.param("loc_mu_b", torch.tensor(0.0))
            scale_mu_b = pyro.param("scale_mu_b", torch.tensor(1.0), constraint=pos)
            a_b = pyro.param("alpha_b", torch.tensor(1.0), constraint=pos)
            b_b = pyro.param("beta_b", torch.tensor(1.0), constraint=pos)
            a_a = pyro.param("alpha_a", torch.tensor(1.0), constraint=pos)
            b_a = pyro.param("beta_a", torch.tensor(1.0), constraint=pos)
            loc_theta = pyro.param("loc_ability", torch.zeros(self.num_subjects, self.dims))
            scale_theta = pyro.param("scale_ability",
                                     0.1 * torch.ones(self.num_subjects, self.dims),
                                     constraint=pos)
            loc_beta = pyro.param("loc_diff", torch.zeros(self.num_items))
            scale_beta = pyro.param("scale_diff", 0.1 * torch.ones(self.num_items),
                                    constraint=pos)
            loc_alpha = pyro.param("loc_disc", torch.zeros(self.num_items, self.dims))
            scale_alpha = pyro.param("scale_disc", 0.1 * torch.ones(self.num_items, self.dims),
                                     constraint=pos)
            pyro.sample("mu_b", dist.Normal(loc_mu_b, scale_mu_b))
            pyro.sample("u_b", dist.Gamma(a_b, b_b))
            pyro.sample("u_a", dist.Gamma(a_a, b_a))
            with pyro.plate("thetas", self.num_subjects):
                pyro.sample("theta", dist.Normal(loc_theta, scale_theta).to_event(1))
            with pyro.plate("items", self.num_items):
                pyro.sample("beta", dist.Normal(loc_beta, scale_beta))
                pyro.sample("alpha", dist.Normal(loc_alpha, scale_alpha).to_event(1))

        def export(self) -> dict[str, list]:
            return {
                "ability": pyro.param("loc_ability").data.tolist(),
                "diff": pyro.param("loc_diff").data.tolist(),
                "disc": pyro.param("loc_disc").data.tolist(),
            }

    @register(_START_NAME)
    class StartValues(IrtInitializer):
        """Set the guide's means to given values: a data-driven start or a warm start."""

        def __init__(self, dataset: object, theta: list, alpha: list, beta: list,
                     stock_2pl: bool = False) -> None:
            super().__init__(dataset)
            self._theta, self._alpha, self._beta = theta, alpha, beta
            self._stock = stock_2pl

        def initialize(self) -> None:
            theta = torch.tensor(self._theta, dtype=torch.float32)
            alpha = torch.tensor(self._alpha, dtype=torch.float32)
            beta = torch.tensor(self._beta, dtype=torch.float32)
            with torch.no_grad():
                if self._stock:  # stock 2pl: a(θ − b), a = exp(loc_slope)
                    a = alpha[:, 0].abs().clamp(min=0.05)
                    pyro.param("loc_ability").data.copy_(theta[:, 0])
                    pyro.param("loc_slope").data.copy_(a.log())
                    pyro.param("loc_diff").data.copy_(beta / a)
                else:
                    pyro.param("loc_ability").data.copy_(theta)
                    pyro.param("loc_disc").data.copy_(alpha)
                    pyro.param("loc_diff").data.copy_(beta)

    _REGISTERED = True


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)  # 4–6× faster for Pyro on 2 cores (ENVIRONMENT.md)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_py_irt(scores: np.ndarray, dims: int, *, epochs: int = 2000, lr: float = 0.1,
               lr_decay: float = 0.9999, seed: int = 0,
               init: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
               threads: int = 1) -> PyIrtFit:
    """Fit σ(α_iᵀθ − β_i) by py-irt SVI; returns the guide means (posterior locations).

    ``scores`` (M, N) binary with NaN for missing. ``init`` = (θ, α, β) start values (a warm
    start for recalibration); by default the data-driven start of the scipy engine.
    """
    _register()
    import pyro
    from ordered_set import OrderedSet
    from py_irt.config import IrtConfig
    from py_irt.dataset import Dataset
    from py_irt.training import IrtModelTrainer

    from irt.engine_scipy import initial_values

    scores = np.asarray(scores, dtype=float)
    finite = scores[~np.isnan(scores)]
    if finite.size and not np.all((finite == 0) | (finite == 1)):
        raise IRTError("The py-irt engine needs binary responses.",
                       fix="binarise first (ResponseMatrix.binarized()).")
    subjects, items = np.nonzero(~np.isnan(scores))
    n_models, n_items = scores.shape
    item_ids = [str(i) for i in range(n_items)]
    subject_ids = [str(m) for m in range(n_models)]
    dataset = Dataset(
        item_ids=OrderedSet(item_ids), subject_ids=OrderedSet(subject_ids),
        item_id_to_ix={s: i for i, s in enumerate(item_ids)},
        ix_to_item_id=dict(enumerate(item_ids)),
        subject_id_to_ix={s: i for i, s in enumerate(subject_ids)},
        ix_to_subject_id=dict(enumerate(subject_ids)),
        observation_subjects=subjects.tolist(), observation_items=items.tolist(),
        observations=scores[subjects, items].tolist(),
        training_example=[True] * len(subjects),
    )
    theta0, alpha0, beta0 = init if init is not None else initial_values(scores, dims, seed)
    stock = dims == 1
    start = {"name": _START_NAME, "theta": np.asarray(theta0).tolist(),
             "alpha": np.asarray(alpha0).tolist(), "beta": np.asarray(beta0).tolist(),
             "stock_2pl": stock}
    config = IrtConfig(model_type="2pl" if stock else MODEL_NAME, epochs=epochs,
                       priors="hierarchical", dims=None if stock else dims, lr=lr,
                       lr_decay=lr_decay, seed=seed, initializers=[start], log_every=10**9)
    from py_irt import anchor_utils, training

    for module in (anchor_utils, training):  # py-irt logs through rich consoles
        module.console.quiet = True
    with _torch_threads(threads):
        pyro.set_rng_seed(seed)
        trainer = IrtModelTrainer(data_path=None, config=config, dataset=dataset,
                                  verbose=False)
        trainer.train(epochs=epochs)
        exported = trainer.last_params
    theta = np.asarray(exported["ability"], dtype=float).reshape(n_models, -1)
    if stock:
        a = np.asarray(exported["disc"], dtype=float)
        b = np.asarray(exported["diff"], dtype=float)
        params = ItemParams(a[:, None], a * b)
    else:
        params = ItemParams(np.asarray(exported["disc"], dtype=float).reshape(n_items, dims),
                            np.asarray(exported["diff"], dtype=float))
    return PyIrtFit(params, theta)


class PyIrtEngine:
    """The py-irt SVI engine behind ``calibrate(engine="py-irt")``."""

    def fit(self, scores: np.ndarray, dims: int, *, epochs: int, seed: int,
            init: tuple[np.ndarray, np.ndarray, np.ndarray] | None
            ) -> tuple[ItemParams, np.ndarray]:
        fit = fit_py_irt(scores, dims, epochs=epochs, seed=seed, init=init)
        return fit.params, fit.theta


py_irt_engine = PyIrtEngine()
