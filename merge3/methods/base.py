"""The merge-method protocol and its registry.

A merge method is a plain function from tensors to a tensor, in the spirit of
mergekit's ``@merge_method``: it receives one tensor per input model (float32), the
base tensor where the method uses one, the per-model parameters as lists (one value
per input model, in order) and the global ones as scalars. The decorator records which
is which, so recipes can be validated and ``merge3 methods`` can describe them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from merge3.registry import Registry

__all__ = ["MergeMethod", "merge_method", "METHODS", "BasePolicy", "NOT_COMPUTED",
           "PARAMETER_RANGES"]

BasePolicy = Literal["required", "optional", "unused"]

METHODS: Registry[MergeMethod] = Registry("merge method", lambda m: isinstance(m, MergeMethod),
                                              expects="MergeMethod (use @merge_method)")

# What ``precomputed`` is until a method's hook ran (its result may well be None).
NOT_COMPUTED: Any = type("NotComputed", (), {"__repr__": lambda self: "NOT_COMPUTED"})()

# The valid values of parameters many methods share, checked when a recipe is parsed
# (inclusive bounds; None: unbounded). A method may narrow or add its own (``ranges=``).
PARAMETER_RANGES: dict[str, tuple[float | None, float | None]] = {
    "density": (0.0, 1.0), "gamma": (0.0, 1.0), "t": (0.0, 1.0), "mask_lambda": (0.0, None),
    "k_fraction": (0.0, 1.0), "common_fraction": (0.0, 1.0), "k": (1, None),
    "max_iter": (1, None), "anchor": (-1, None),
}

# Python keywords cannot be parameter names; recipes write `lambda`.
_ALIASES = {"lambda_": "lambda"}


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method and what it accepts."""

    name: str
    pretty_name: str
    reference: str
    func: Callable[..., torch.Tensor]
    base: BasePolicy
    per_model: dict[str, Any]  # name -> default (None: required)
    global_params: dict[str, Any] = field(default_factory=dict)
    min_models: int = 1
    max_models: int | None = None
    wants_generator: bool = False
    wants_name: bool = False
    masks: bool = False  # may drop entries: a NaN in an input need not reach the output
    align: str | None = None  # whole-model alignment run before the per-tensor merge
    # The base, where given, is merged as one more input (karcher, as in mergekit, where the
    # method has no base): a slice whose sources leave it out merges without it.
    base_is_input: bool = False
    elementwise: bool = False  # each output entry depends on the same entry of the inputs
    # Genome-independent work (e.g. TSV-M's orthogonalised factors): computed from the
    # inputs and the global parameters it names, passed to ``func`` as ``precomputed``.
    # The executor caches it per tensor where the inputs stay fixed (a search worker).
    precompute: Callable[..., Any] | None = None
    precompute_params: tuple[str, ...] = ()
    # Whole-model work before the per-tensor merge (e.g. one threshold over the whole model,
    # FusionBench's TIES): ``model_pass(stream, setting, memo)`` streams the model as often as
    # it needs (``stream()`` yields ``(name, inputs, base)`` per floating tensor), reads a
    # parameter that must hold model-wide with ``setting(key)``, and may keep
    # genome-independent work in ``memo`` (a search worker's lives as long as its inputs).
    # Its result reaches ``func`` as ``model_stats`` (None where no whole model is merged).
    model_pass: Callable[..., Any] | None = None
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    description: str = ""

    @property
    def parameter_names(self) -> set[str]:
        return set(self.per_model) | set(self.global_params)

    def __call__(
        self,
        tensors: list[torch.Tensor],
        base: torch.Tensor | None,
        *,
        name: str = "",
        generator: torch.Generator | None = None,
        precomputed: Any = NOT_COMPUTED,
        model_stats: Any = None,
        **params: Any,
    ) -> torch.Tensor:
        kwargs = {python_name(k): v for k, v in params.items()}
        if self.model_pass is not None:
            kwargs["model_stats"] = model_stats
        if self.precompute is not None:
            if precomputed is NOT_COMPUTED:
                precomputed = self.prepare(tensors, base, name=name, **params)
            kwargs["precomputed"] = precomputed
        if self.wants_generator:
            kwargs["generator"] = generator
        if self.wants_name:
            kwargs["name"] = name
        if self.base == "unused":
            return self.func(tensors, **kwargs)
        return self.func(tensors, base, **kwargs)


    def prepare(self, tensors: list[torch.Tensor], base: torch.Tensor | None, *,
                name: str = "", **params: Any) -> Any:
        """The method's genome-independent work on one tensor (None without a hook)."""
        if self.precompute is None:
            return None
        options = {python_name(k): params.get(k, self.global_params[k])
                   for k in self.precompute_params}
        return self.precompute(tensors, base, name=name, **options)


def python_name(recipe_name: str) -> str:
    for py, recipe in _ALIASES.items():
        if recipe == recipe_name:
            return py
    return recipe_name


def merge_method(
    name: str,
    *,
    pretty_name: str,
    reference: str,
    base: BasePolicy = "required",
    per_model: dict[str, Any] | None = None,
    min_models: int = 1,
    max_models: int | None = None,
    masks: bool = False,
    align: str | None = None,
    base_is_input: bool = False,
    elementwise: bool = False,
    precompute: Callable[..., Any] | None = None,
    model_pass: Callable[..., Any] | None = None,
    ranges: dict[str, tuple[float | None, float | None]] | None = None,
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Register ``func(tensors, base, *, <per-model lists>, <globals>=default)``.

    Keyword-only parameters named in ``per_model`` receive one value per input model;
    the other keyword-only parameters are global and must have defaults. A parameter
    called ``generator`` receives a seeded ``torch.Generator`` (one per tensor), one
    called ``name`` the tensor's name. ``precompute(tensors, base, *, name, <some
    globals>)`` is the genome-independent part of the method: its result reaches ``func``
    as the keyword ``precomputed``, and a search worker computes it once per tensor.
    ``model_pass`` is whole-model work (see ``MergeMethod.model_pass``); ``func`` then
    takes ``model_stats``. ``ranges`` bound parameter values (checked at parse time)
    beyond PARAMETER_RANGES.
    """
    per_model = dict(per_model or {})

    def register(func: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        signature = inspect.signature(func)
        global_params: dict[str, Any] = {}
        for param in signature.parameters.values():
            if param.kind is not inspect.Parameter.KEYWORD_ONLY:
                continue
            if (param.name in ("generator", "name", "precomputed", "model_stats")
                    or param.name in per_model):
                continue
            if param.default is inspect.Parameter.empty:
                raise TypeError(f"{func.__name__}: global parameter {param.name} needs a default")
            global_params[_ALIASES.get(param.name, param.name)] = param.default
        missing = set(per_model) - set(signature.parameters)
        if missing:
            raise TypeError(f"{func.__name__}: per-model parameters {missing} not in signature")
        precompute_params: tuple[str, ...] = ()
        if precompute is not None:
            hook = inspect.signature(precompute).parameters.values()
            precompute_params = tuple(
                _ALIASES.get(p.name, p.name) for p in hook
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "name")
            unknown = set(precompute_params) - set(global_params)
            if unknown:
                raise TypeError(f"{func.__name__}: precompute reads {unknown}, which are not "
                                "global parameters")
        doc = inspect.getdoc(func) or ""
        METHODS.register(
            name,
            MergeMethod(
                name=name,
                pretty_name=pretty_name,
                reference=reference,
                func=func,
                base=base,
                per_model=per_model,
                global_params=global_params,
                min_models=min_models,
                max_models=max_models,
                wants_generator="generator" in signature.parameters,
                wants_name="name" in signature.parameters,
                masks=masks,
                align=align,
                base_is_input=base_is_input,
                elementwise=elementwise,
                precompute=precompute,
                precompute_params=precompute_params,
                model_pass=model_pass,
                ranges={**{k: v for k, v in PARAMETER_RANGES.items()
                           if k in per_model or k in global_params}, **(ranges or {})},
                description=doc.splitlines()[0] if doc else "",
            ),
        )
        return func

    return register
