from __future__ import annotations

import pytest
import torch

from merge3.checkpoints import Checkpoint
from merge3.errors import RecipeError
from merge3.genome import Genome
from merge3.merging import run_merge
from merge3.recipe import parse_recipe
from search.config import parse_config
from search.materialize import Materializer
from search.testing.setting import search_config


def _genome(llama_family, method="tsv_m", **groups):
    experts = {"a": str(llama_family["expert_1"]), "b": str(llama_family["expert_2"])}
    groups = groups or {"weight": {"per": "model", "layer_groups": 3, "low": 0.0, "high": 1.5},
                        "alpha": {"low": 0.5, "high": 2.0}}
    return Genome(method, experts, groups, base_model=str(llama_family["base"]))


def test_genes_are_named_per_expert_and_layer_group(llama_family):
    genome = _genome(llama_family)
    assert genome.names == ["weight/a/0", "weight/a/1", "weight/a/2",
                            "weight/b/0", "weight/b/1", "weight/b/2", "alpha"]


def test_genome_recipe_round_trip_and_rebuild(llama_family, tmp_path):
    genome = _genome(llama_family)
    values = {name: 0.1 * (i + 1) for i, name in enumerate(genome.names)}
    recipe = genome.decode(values)
    assert recipe["models"][0]["parameters"]["weight"] == pytest.approx([0.1, 0.2, 0.3])
    assert recipe["parameters"]["alpha"] == pytest.approx(0.7)
    assert genome.encode(recipe) == pytest.approx(values)
    # the decoded recipe is an ordinary recipe: `merge3 merge` rebuilds the candidate
    out = Checkpoint(run_merge(parse_recipe(recipe), tmp_path / "m", progress=False))
    base = Checkpoint(llama_family["base"])
    experts = [Checkpoint(llama_family[k]).state_dict() for k in ("expert_1", "expert_2")]
    in_memory = Materializer(base.state_dict(), experts, num_layers=3).materialize(recipe)
    for name in out.names():  # the same executor: the same bits
        assert torch.equal(in_memory[name], out.get(name)), name


def test_genome_errors(llama_family):
    with pytest.raises(RecipeError, match=r"no parameter 'weigth'.*Did you mean 'weight'"):
        _genome(llama_family, weigth={"low": 0, "high": 1})
    with pytest.raises(RecipeError, match=r"'alpha' is a global parameter"):
        _genome(llama_family, alpha={"per": "model", "low": 0, "high": 1})


def test_search_config_errors():
    base = {"experts": {"a": "x"}, "genome": {"weight": {"low": 0, "high": 1}},
            "tasks": {"a": "t.yaml"}, "fitness": {"estimator": "full"}}
    parse_config(base)
    with pytest.raises(RecipeError, match=r"unknown key 'stratgy'.*Did you mean 'strategy'"):
        parse_config({**base, "stratgy": {}})
    with pytest.raises(RecipeError, match=r"unknown key 'strategy.popsize'"):
        parse_config({**base, "strategy": {"popsize": 3}})
    with pytest.raises(RecipeError, match=r"low \(1.0\) must be below high"):
        parse_config({**base, "genome": {"weight": {"low": 1, "high": 0.5}}})
    with pytest.raises(RecipeError, match=r"needs fitness.item_bank"):
        parse_config({**base, "fitness": {"estimator": "mp-irt"}})
    with pytest.raises(RecipeError, match=r"objective 'b' is not in tasks"):
        parse_config({**base, "objectives": ["b"]})


def test_materializer_aligns_once_for_alignment_methods(llama_family):
    base = Checkpoint(llama_family["base"]).state_dict()
    experts = [Checkpoint(llama_family[k]).state_dict() for k in ("expert_1", "expert_2")]
    materializer = Materializer(base, experts, num_layers=3)
    recipe = {"merge_method": "c2m3", "parameters": {"max_iter": 20},
              "models": [{"model": "a", "parameters": {"weight": [1.0, 0.0]}},
                         {"model": "b", "parameters": {"weight": [0.0, 1.0]}}]}
    merged = materializer.materialize(recipe)
    (aligned,) = materializer.cache.aligned.values()  # one alignment, cached
    first, last = "model.layers.0.mlp.up_proj.weight", "model.layers.2.mlp.up_proj.weight"
    assert torch.equal(merged[first], aligned[0].get(first))  # layer 0: all model a (aligned)
    assert torch.equal(merged[last], aligned[1].get(last))  # last layer: all model b (aligned)
    materializer.materialize(recipe)
    assert list(materializer.cache.aligned.values()) == [aligned]  # computed once


def test_estimator_and_sampler_names_come_from_the_registries():
    from irt.estimators import DEFAULT_ESTIMATOR

    setting = {"base": "/b", "experts": {"a": "/a", "b": "/c"}, "tasks": {"a": "/t"},
               "banks": "/k"}
    config = search_config(setting)
    config["fitness"] = {"item_bank": "/k"}
    assert parse_config(config).fitness.estimator == DEFAULT_ESTIMATOR  # one default
    config["fitness"]["estimator"] = "mp-irtt"
    with pytest.raises(RecipeError, match=r"fitness.estimator: Unknown estimator 'mp-irtt'\. "
                                          r"Did you mean 'mp-irt'\?"):
        parse_config(config)
    config["fitness"]["estimator"] = "full"
    config["strategy"]["sampler"] = "nsga-2"
    with pytest.raises(RecipeError, match=r"strategy.sampler: Unknown sampler 'nsga-2'\. "
                                          r"Did you mean 'nsga2'\?"):
        parse_config(config)
