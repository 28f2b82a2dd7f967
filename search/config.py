"""The search config (YAML): what to merge, how to score, how to search, where to log.

    name: zoo-demo
    base_model: zoo:minilm/base
    experts: {topic: zoo:minilm/expert/topic, lang: zoo:minilm/expert/lang}
    method: tsv_m
    genome:
      weight: {per: model, layer_groups: 2, low: 0.0, high: 1.5}
      alpha: {low: 0.5, high: 2.0}
    tasks: {topic: zoo:tasks/topic.yaml, lang: zoo:tasks/lang.yaml}
    fitness: {estimator: mp-irt, item_bank: zoo:bank, anchors: 30}
    # or: fitness: {item_bank: ..., adaptive: {core: 10, budget: 20, batch: 5, se_target: 0.03}}
    strategy: {sampler: nsga2, population: 8, generations: 4, seed: 0}
    workers: {count: 2}
    expert_storage: {kind: lowrank, rank: 16, dtype: bfloat16}   # default: {kind: files}

Unknown keys are refused with a "did you mean"; relative paths are read from the
config file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from merge3.errors import RecipeError, UnknownNameError
from merge3.genome import GeneGroup
from merge3.recipe import read_yaml_mapping
from merge3.registry import did_you_mean

__all__ = ["SearchConfig", "EvaluationSpec", "ExpertStorageSpec", "AdaptiveSpec", "load_config",
           "parse_config"]



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvaluationSpec(_Strict):
    # a name in evaluators.backends.BACKENDS (hf, vllm, ...) or "module:factory"
    backend: str = "hf"
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = Field(64, ge=1)
    # evaluations that score every item (estimator: full, the front's full evaluation)
    # score the first `limit` items of each task, as lm-eval's --limit (None: all)
    limit: int | None = Field(None, ge=1)
    trust_remote_code: bool = False  # run Python code shipped in the model dir (auto_map)

    def evaluator_options(self) -> dict[str, Any]:
        """The keyword options every backend's evaluator is built with."""
        return {"device": self.device, "dtype": self.dtype, "batch_size": self.batch_size,
                "trust_remote_code": self.trust_remote_code}


def _irt_estimators():  # noqa: ANN202 - (default name, registry), imported when needed
    from irt.estimators import DEFAULT_ESTIMATOR, ESTIMATORS

    return DEFAULT_ESTIMATOR, ESTIMATORS


def _registered(registry: Any, name: str) -> str:
    """``name`` if the registry holds it; its did-you-mean error as a config error."""
    try:
        registry.get(name)
    except UnknownNameError as err:
        raise ValueError(str(err).split(" Fix:")[0]) from None
    return name


class AdaptiveSpec(_Strict):
    """Adaptive testing per candidate (irt/adaptive.py; docs/search.md, "Adaptive fitness").

    Every candidate answers the shared ``core`` (``fitness.anchor_method`` anchors: they
    keep candidates paired), then batches of ``batch`` items chosen by Fisher information
    (D-optimality) at its own ability estimate, on the same worker, until the estimate's
    standard error is at most ``se_target`` (None: never) or ``budget`` items per task
    were asked. A close call's re-scoring items (``rescore_items``) are such a top-up too.
    """

    core: int = Field(10, ge=1)
    budget: int = Field(20, ge=1)
    batch: int = Field(5, ge=1)
    se_target: float | None = Field(0.03, gt=0)
    criterion: Literal["d-optimal", "accuracy"] = "d-optimal"

    @model_validator(mode="after")
    def _budget_holds_the_core(self) -> AdaptiveSpec:
        if self.budget < self.core:
            raise ValueError(f"adaptive.budget {self.budget} is below adaptive.core "
                             f"{self.core} (the budget counts the core)")
        return self


class FitnessSpec(_Strict):
    # "full" (every item, no IRT) or a name of irt's ESTIMATORS registry (default: irt's)
    estimator: str = Field(default_factory=lambda: _irt_estimators()[0])
    item_bank: str | None = None
    anchors: int = Field(50, ge=1)
    anchor_method: str = "kmeans-irt"
    seed: int = 0
    full_every: int = Field(0, ge=0)  # every G generations fully evaluate the front (0: never)
    recalibrate: bool = True  # feed those full evaluations back into the item bank
    # close calls (dominated, but within rescore_margin standard errors of the front) are
    # scored on rescore_items more items per task before they are told (0: never)
    rescore_items: int = Field(0, ge=0)
    rescore_margin: float = Field(1.0, gt=0)
    # a shared core plus per-candidate Fisher top-ups (None: every candidate answers the
    # same `anchors` items); the core's size is `anchors`
    adaptive: AdaptiveSpec | None = None

    @field_validator("estimator")
    @classmethod
    def _known_estimator(cls, name: str) -> str:
        if name != "full":
            _registered(_irt_estimators()[1], name)
        return name

    @model_validator(mode="after")
    def _core_is_the_anchors(self) -> FitnessSpec:
        if self.adaptive is None:
            return self
        if self.estimator == "full":
            raise ValueError("adaptive needs an IRT estimator (estimator: full scores every "
                             "item already)")
        if "anchors" in self.model_fields_set and self.anchors != self.adaptive.core:
            raise ValueError(f"anchors ({self.anchors}) and adaptive.core "
                             f"({self.adaptive.core}) disagree: the core is the shared "
                             "anchor set, give one of them")
        self.anchors = self.adaptive.core
        return self


class StrategySpec(_Strict):
    sampler: str = "nsga2"  # a name of search.strategy.SAMPLERS
    population: int = Field(8, ge=2)
    generations: int = Field(4, ge=1)
    seed: int = 0
    storage: str | None = None  # Optuna RDB URL; default: SQLite in the run directory
    crossover_prob: float = Field(0.9, ge=0, le=1)
    mutation_prob: float | None = Field(None, ge=0, le=1)

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, name: str) -> str:
        from search.strategy import SAMPLERS

        return _registered(SAMPLERS, name)


class WorkersSpec(_Strict):
    count: int | None = Field(None, ge=1)  # default: one per GPU, else one per 1 CPU
    cpus: float = Field(1.0, gt=0)
    gpus: float | None = Field(None, ge=0)  # default: 1 where CUDA exists, else 0
    timeout: float = Field(600.0, gt=0)  # seconds per candidate before the worker is killed
    retries: int = Field(1, ge=0)
    address: str | None = None  # join a Ray cluster; default: a local Ray
    fault: dict[str, Any] | None = None  # fault injection for reliability tests (search/faults.py)


class ExpertStorageSpec(_Strict):
    """How a worker holds the experts (docs/search.md, "Expert storage").

    ``files``: not at all: each tensor is read from the expert's checkpoint as it is merged
    (own dtype, from the page cache). ``lowrank``: each 2-D task vector as its top-``rank``
    singular triplets (TSV-C, merge3/lowrank.py) in ``dtype``; other tensors as they are;
    the expert files are read once, when the worker starts.
    """

    kind: Literal["files", "lowrank"] = "files"
    rank: int | None = Field(None, ge=1)
    dtype: Literal["float32", "bfloat16"] = "float32"  # of the low-rank factors

    @model_validator(mode="after")
    def _rank_given(self) -> ExpertStorageSpec:
        if self.kind == "lowrank" and self.rank is None:
            raise ValueError("kind lowrank needs a rank (e.g. rank: 16)")
        if self.kind == "files" and self.rank is not None:
            raise ValueError("rank is only for kind: lowrank (files keep every tensor)")
        return self


class TrackingSpec(_Strict):
    uri: str | None = None  # default: sqlite:///<run dir>/mlflow.db
    experiment: str | None = None  # default: the search's name
    flush_timeout: float = Field(60.0, ge=0)  # at the end, wait this long for a down server


class SearchConfig(_Strict):
    name: str = "merge3-search"
    base_model: str | None = None
    experts: dict[str, str]
    method: str = "tsv_m"
    genome: dict[str, GeneGroup]
    fixed: dict[str, Any] = Field(default_factory=dict)
    dtype: str | None = None
    tasks: dict[str, str]
    objectives: list[str] | None = None  # default: every task
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    fitness: FitnessSpec = Field(default_factory=FitnessSpec)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    workers: WorkersSpec = Field(default_factory=WorkersSpec)
    expert_storage: ExpertStorageSpec = Field(default_factory=ExpertStorageSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        if not self.experts:
            raise ValueError("experts: give at least one expert model")
        unknown = [t for t in self.objective_tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"objective {unknown[0]!r} is not in tasks "
                             f"({', '.join(self.tasks)})")
        if self.fitness.estimator != "full" and self.fitness.item_bank is None:
            raise ValueError(f"fitness.estimator {self.fitness.estimator!r} needs "
                             "fitness.item_bank (or use estimator: full)")
        return self

    @property
    def objective_tasks(self) -> list[str]:
        return list(self.objectives) if self.objectives else list(self.tasks)

    def resolve_paths(self, root: Path) -> SearchConfig:
        def fix(value: str) -> str:
            if ":" in value.split("/")[0] or os.path.isabs(value):
                return value  # zoo:..., hf:..., a URL or an absolute path
            candidate = root / value
            return str(candidate.resolve()) if candidate.exists() else value

        copy = self.model_copy(deep=True)
        if copy.base_model:
            copy.base_model = fix(copy.base_model)
        copy.experts = {k: fix(v) for k, v in copy.experts.items()}
        copy.tasks = {k: fix(v) for k, v in copy.tasks.items()}
        if copy.fitness.item_bank:
            copy.fitness.item_bank = fix(copy.fitness.item_bank)
        return copy


def _known(loc: tuple[Any, ...]) -> list[str]:
    models: dict[str, type[BaseModel]] = {
        "evaluation": EvaluationSpec, "fitness": FitnessSpec, "strategy": StrategySpec,
        "workers": WorkersSpec, "tracking": TrackingSpec, "expert_storage": ExpertStorageSpec,
    }
    if len(loc) >= 3 and tuple(loc[:2]) == ("fitness", "adaptive"):
        return list(AdaptiveSpec.model_fields)
    if len(loc) >= 2 and loc[0] == "genome":
        return list(GeneGroup.model_fields)
    if len(loc) >= 2 and loc[0] in models:
        return list(models[loc[0]].model_fields)
    return list(SearchConfig.model_fields)


def parse_config(data: dict[str, Any], source: str = "config") -> SearchConfig:
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            key = str(first["loc"][-1])
            known = _known(first["loc"])
            raise RecipeError(f"{source}: unknown key {where!r}.{did_you_mean(key, known)}",
                              fix=f"use one of: {', '.join(known)}.") from None
        message = first["msg"].removeprefix("Value error, ")
        end = "" if message.endswith((".", "?", "!")) else "."
        raise RecipeError(f"{source}: {where or 'config'}: {message}{end}",
                          fix="see `merge3 search --help` for the config format.") from None


def load_config(path: str | os.PathLike[str]) -> SearchConfig:
    data = read_yaml_mapping(path, "search config")
    return parse_config(data, str(path)).resolve_paths(Path(path).parent)
