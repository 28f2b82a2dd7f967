"""Every extension point takes a plug-in defined outside the package: one class + one line.

Each toy below is registered from this module (the way a user's package would do it) and
used through the public entry point and the command line, whose choices come from the
registries: ``make_evaluator`` / ``merge3 eval --backend``, ``estimate_accuracy`` /
``merge3 irt estimate --estimator``, ``select_anchors`` / ``merge3 irt anchors --method``,
``calibrate(engine=)``, ``align_models`` and ``make_sampler`` with the Optuna study it
drives. docs/extending.md shows the same toys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from evaluators import BACKENDS, Item, ItemResult, load_task, make_evaluator
from irt import (
    ENGINES,
    ESTIMATORS,
    SELECTORS,
    AnchorEstimator,
    IRTError,
    ItemBank,
    ItemParams,
    ResponseMatrix,
    calibrate,
    estimate_accuracy,
    select_anchors,
)
from merge3.alignment import ALIGNMENTS, AlignmentResult, align_models, mlp_spec
from merge3.cli import main
from merge3.errors import UnknownNameError
from merge3.testing.eval_fixtures import build_tasks
from search.strategy import SAMPLERS, SamplerKind, make_sampler, objective_count, open_study


# ---------------------------------------------------------------------- the toys
class AnswerKeyEvaluator:
    """A backend that answers from MODEL/answers.json ({item id: answer})."""

    def __init__(self, model_path: str | Path, **options: object) -> None:
        self.answers = json.loads((Path(model_path) / "answers.json").read_text())
        self.options = options

    def evaluate(self, items: Sequence[Item]) -> list[ItemResult]:
        return [ItemResult(i.task, i.id, float(self.answers.get(i.id) == i.target),
                           self.answers.get(i.id), i.target) for i in items]

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        self.answers = {k: str(int(v.item())) for k, v in state.items()}

    def close(self) -> None:
        self.answers = {}


class ParentMean:
    """Accuracy = the mean bank accuracy of the merge's parents (else the anchor mean)."""

    uses_endpoints = True

    def predict(self, prepared: AnchorEstimator, y: np.ndarray,
                endpoints: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if endpoints is None:
            return prepared.anchor_mean(y)
        accuracy = np.nanmean(prepared.bank.responses, axis=1)
        return accuracy[endpoints].mean(axis=1), np.zeros(len(y))


class FirstItems:
    """Anchors = the bank's first k items, equal weights."""

    def select(self, bank: ItemBank, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(k), np.full(k, 1.0 / k)


class MomentEngine:
    """2PL by moments: β = −logit(item accuracy), α = 1, θ = logit(model accuracy)."""

    def fit(self, scores: np.ndarray, dims: int, *, epochs: int, seed: int,
            init: object) -> tuple[ItemParams, np.ndarray]:
        def logit(p: np.ndarray) -> np.ndarray:
            p = np.clip(p, 0.02, 0.98)
            return np.log(p / (1 - p))

        beta = -logit(np.nanmean(scores, axis=0))
        theta = np.tile(logit(np.nanmean(scores, axis=1))[:, None], (1, dims))
        return ItemParams(np.ones((scores.shape[1], dims)) / dims, beta), theta


def reverse_hidden(state_dicts: Sequence[dict], spec: object, seed: int = 0
                   ) -> AlignmentResult:
    """An alignment that reverses the hidden units of every model but the first."""
    from merge3.alignment import apply_permutations, average_state_dicts

    sizes = spec.sizes(state_dicts[0])
    perms = [{p: np.arange(n) if i == 0 else np.arange(n)[::-1].copy() for p, n in sizes.items()}
             for i in range(len(state_dicts))]
    aligned = [apply_permutations(dict(sd), spec, p) for sd, p in zip(state_dicts, perms)]
    return AlignmentResult("reverse", average_state_dicts(aligned), aligned, perms)


class LowestSampler(optuna.samplers.BaseSampler):
    """Every parameter at the low end of its range (records the options it was built with)."""

    def __init__(self, **options: object) -> None:
        self.options = options

    def infer_relative_search_space(self, study, trial):  # noqa: ANN001, ANN201
        return {}

    def sample_relative(self, study, trial, search_space):  # noqa: ANN001, ANN201
        return {}

    def sample_independent(self, study, trial, name, distribution):  # noqa: ANN001, ANN201
        return distribution.low


@pytest.fixture
def registered() -> Iterator[None]:
    """The toys, each registered with one line (and removed after the test)."""
    BACKENDS.register("answer-key", AnswerKeyEvaluator)
    ESTIMATORS.register("parent-mean", ParentMean())
    SELECTORS.register("first", FirstItems())
    ENGINES.register("moments", MomentEngine())
    ALIGNMENTS.register("reverse", reverse_hidden)
    SAMPLERS.register("lowest", SamplerKind(LowestSampler))
    yield
    for registry, name in ((BACKENDS, "answer-key"), (ESTIMATORS, "parent-mean"),
                           (SELECTORS, "first"), (ENGINES, "moments"),
                           (ALIGNMENTS, "reverse"), (SAMPLERS, "lowest")):
        registry.unregister(name)


# ---------------------------------------------------------------------- shared data
def _population(n_models: int = 60, n_items: int = 40, seed: int = 0) -> ResponseMatrix:
    """Binary responses of a 2PL population (abilities spread, items of mixed difficulty)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_models)
    beta = rng.normal(size=n_items)
    y = (rng.random((n_models, n_items)) < 1 / (1 + np.exp(-(theta[:, None] - beta))))
    return ResponseMatrix(y.astype(float), [f"m{k}" for k in range(n_models)],
                          [f"t/{i}" for i in range(n_items)], ["t"] * n_items)


@pytest.fixture(scope="module")
def bank() -> ItemBank:
    return calibrate(_population().select_models(range(50)), model="2pl", seed=0)


# ---------------------------------------------------------------------- backends
def test_a_backend_is_one_class_and_one_line(registered, tmp_path: Path, capsys) -> None:
    tasks = build_tasks(tmp_path / "tasks", n=10)
    items = load_task(tasks["arith_gen"]).items
    model = tmp_path / "answer_model"
    model.mkdir()
    # right on the even items, wrong on the odd ones
    answers = {item.id: item.target if k % 2 == 0 else "wrong" for k, item in enumerate(items)}
    (model / "answers.json").write_text(json.dumps(answers))

    evaluator = make_evaluator("answer-key", model, device="cpu")
    assert isinstance(evaluator, AnswerKeyEvaluator) and evaluator.options == {"device": "cpu"}
    scores = [r.score for r in evaluator.evaluate(items)]
    assert scores == [1.0 if k % 2 == 0 else 0.0 for k in range(len(items))]
    evaluator.load_weights({items[0].id: torch.tensor(7.0)})
    assert evaluator.answers == {items[0].id: "7"}

    # `merge3 eval --backend` offers it and writes the usual logs with its answers
    out = tmp_path / "logs"
    assert main(["eval", str(model), "--tasks", str(tasks["arith_gen"]), "--backend",
                 "answer-key", "--log-samples", str(out), "--no-progress"]) == 0
    lines = (out / "answer_model" / "samples_arith_gen.jsonl").read_text().splitlines()
    logged = {json.loads(line)["item"]: json.loads(line)["score"] for line in lines}
    assert logged == {item.id: s for item, s in zip(items, scores)}
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "answer-key" in capsys.readouterr().out


def test_a_backend_that_builds_no_evaluator_is_refused(registered, tmp_path: Path) -> None:
    BACKENDS.register("not-an-evaluator", lambda model_path, **options: object())
    try:
        with pytest.raises(Exception, match="lacks evaluate, load_weights, close"):
            make_evaluator("not-an-evaluator", tmp_path)
    finally:
        BACKENDS.unregister("not-an-evaluator")
    with pytest.raises(TypeError, match="Evaluator class"):
        BACKENDS.register("no-methods", type("NoMethods", (), {}))
    with pytest.raises(UnknownNameError, match="Did you mean 'answer-key'"):
        make_evaluator("answer-kee", tmp_path)


# ---------------------------------------------------------------------- estimators
def test_an_estimator_is_one_class_and_one_line(registered, bank: ItemBank, tmp_path: Path,
                                                capsys) -> None:
    new = _population().select_models(range(50, 54))
    anchors = select_anchors(bank, 10, "random", seed=0)
    accuracy = np.nanmean(bank.responses, axis=1)
    parents = {m: ["m0", "m3"] for m in new.model_ids}
    by_parents = estimate_accuracy(bank, new, "parent-mean", anchors, endpoints=parents)
    assert [e.estimate for e in by_parents] == pytest.approx([(accuracy[0] + accuracy[3]) / 2]
                                                             * 4)
    assert {e.estimator for e in by_parents} == {"parent-mean"}
    # without endpoints it is the anchor mean, exactly the built-in `mean`
    alone = estimate_accuracy(bank, new, "parent-mean", anchors)
    mean = estimate_accuracy(bank, new, "mean", anchors)
    assert [e.estimate for e in alone] == [e.estimate for e in mean]
    assert len({e.estimate for e in alone}) > 1  # the models differ: not a constant

    # `merge3 irt estimate --estimator` offers it
    bank.save(tmp_path / "bank")
    anchors.save(tmp_path / "anchors.json")
    rows = [f"{m},{i},{int(s)},t" for m, row in zip(new.model_ids, new.scores)
            for i, s in zip(new.item_ids, row)]
    (tmp_path / "new.csv").write_text("model,item,score,task\n" + "\n".join(rows) + "\n")
    (tmp_path / "parents.json").write_text(json.dumps(parents))
    assert main(["irt", "estimate", str(tmp_path / "bank"), str(tmp_path / "new.csv"),
                 "--anchors", str(tmp_path / "anchors.json"), "--estimator", "parent-mean",
                 "--endpoints", str(tmp_path / "parents.json"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["estimate"] for r in printed] == pytest.approx([e.estimate for e in by_parents])


def test_an_estimator_must_be_an_instance_with_predict(registered) -> None:
    with pytest.raises(TypeError, match="Estimator instance"):
        ESTIMATORS.register("class-not-instance", ParentMean)
    with pytest.raises(IRTError, match="Unknown estimator 'parent-man'.*Did you mean"):
        ESTIMATORS.get("parent-man")


# ---------------------------------------------------------------------- anchor selectors
def test_an_anchor_selector_is_one_class_and_one_line(registered, bank: ItemBank,
                                                      tmp_path: Path) -> None:
    # a selector sees the bank's selectable items only (flagged ones are left out first)
    usable = bank.selectable.tolist()
    assert len(usable) >= 5
    anchors = select_anchors(bank, 4, "first")
    assert anchors.indices.tolist() == usable[:4] and anchors.method == "first"
    assert anchors.item_ids == tuple(bank.item_ids[i] for i in usable[:4])
    bank.save(tmp_path / "bank")
    assert main(["irt", "anchors", str(tmp_path / "bank"), "--k", "5", "--method", "first",
                 "--out", str(tmp_path / "a.json")]) == 0
    written = json.loads((tmp_path / "a.json").read_text())
    assert [e["index"] for e in written["items"]] == usable[:5]


def test_a_selector_returning_duplicates_is_refused(registered, bank: ItemBank) -> None:
    class Repeats:
        def select(self, bank: ItemBank, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
            return np.zeros(k, dtype=int), np.full(k, 1.0 / k)

    SELECTORS.register("repeats", Repeats())
    try:
        with pytest.raises(IRTError, match="1 distinct"):
            select_anchors(bank, 3, "repeats")
    finally:
        SELECTORS.unregister("repeats")


# ---------------------------------------------------------------------- engines
def test_a_calibration_engine_is_one_class_and_one_line(registered) -> None:
    matrix = _population(n_models=30)
    fitted = calibrate(matrix, model="2pl", engine="moments", heldout_fraction=0.0)
    assert fitted.metadata["engine"] == "moments"
    item_accuracy = np.clip(matrix.scores.mean(axis=0), 0.02, 0.98)
    np.testing.assert_allclose(fitted.params.beta, -np.log(item_accuracy / (1 - item_accuracy)))


# ---------------------------------------------------------------------- alignment
def test_an_alignment_is_one_function_and_one_line(registered) -> None:
    spec = mlp_spec(["fc1", "fc2"])
    gen = torch.Generator().manual_seed(0)
    shapes = {"fc1.weight": (4, 3), "fc1.bias": (4,), "fc2.weight": (2, 4), "fc2.bias": (2,)}
    states = [{name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}
              for _ in range(2)]
    result = align_models(states, spec, "reverse")
    torch.testing.assert_close(result.aligned[1]["fc1.weight"], states[1]["fc1.weight"].flip(0))
    torch.testing.assert_close(result.aligned[1]["fc2.weight"], states[1]["fc2.weight"].flip(1))
    torch.testing.assert_close(result.aligned[0]["fc1.weight"], states[0]["fc1.weight"])


# ---------------------------------------------------------------------- samplers
def test_a_sampler_is_one_class_and_one_line(registered, tmp_path: Path) -> None:
    sampler = make_sampler("lowest", population=4, seed=3)
    assert isinstance(sampler, LowestSampler)
    assert sampler.options == {"population": 4, "seed": 3, "crossover_prob": 0.9,
                               "mutation_prob": None}
    study = open_study(name="toy", storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                       sampler=sampler, objectives=objective_count("lowest", 3))
    assert study.sampler is sampler and len(study.directions) == 1
    for _ in range(3):
        trial = study.ask()
        values = [trial.suggest_float("alpha", 0.2, 1.5), trial.suggest_int("rank", 2, 9)]
        study.tell(trial, sum(values))
    assert [t.params for t in study.trials] == [{"alpha": 0.2, "rank": 2}] * 3
    assert objective_count("nsga2", 3) == 3 and objective_count("ga", 3) == 1


# ---------------------------------------------------------------------- the CLI's choices
def test_cli_choices_are_the_registries_names(registered, capsys) -> None:
    from merge3.cli import build_parser

    def choices(*path: str, option: str) -> list[str]:
        parser = build_parser()
        for verb in path:  # walk the subcommands down to the leaf parser
            sub = next(a for a in parser._actions if a.dest.endswith(("verb", "command")))
            parser = sub.choices[verb]
        return list(next(a for a in parser._actions if option in a.option_strings).choices)

    assert choices("eval", option="--backend") == list(BACKENDS.names())
    assert "answer-key" in BACKENDS.names() and "mass" in BACKENDS.names()
    assert choices("irt", "estimate", option="--estimator") == list(ESTIMATORS.names())
    assert choices("irt", "anchors", option="--method") == list(SELECTORS.names())
    assert choices("irt", "calibrate", option="--engine") == list(ENGINES.names())
    assert choices("align", option="--method") == [m for m in ALIGNMENTS if m != "naive"]
    assert "reverse" in choices("align", option="--method")
    # `merge3 methods NAME` names a registered merge method, with "did you mean"
    assert main(["methods", "tie"]) == 2
    assert "Did you mean 'ties'" in capsys.readouterr().err
