"""WUDI, MagMax, SVC, CART, PCB, TIES with ``trim_scope: model`` and Iso-CTS's rounding:
equal to their reference code, and the properties that define them.

CI has neither FusionBench nor the authors' repositories, so
``tests/merge3/data/datafree_reference.safetensors`` holds inputs and the outputs the
references computed from them (written by ``tests/merge3/data/datafree_golden.py``:
FusionBench 0.2.33 for WUDI, MagMax, SVC, TIES and Iso-CTS; CART's and PCB's authors'
functions run from their repositories).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from merge3.errors import MergeError, RecipeError
from merge3.executor import MergeCache, StateDict, merge_job, merge_model, merge_tensor
from merge3.methods import METHODS, get_method
from merge3.methods import iso as iso_module
from merge3.methods.cart import low_rank
from merge3.methods.magmax import magmax
from merge3.methods.model_select import first_pass, kth, kth_values
from merge3.methods.svc import calibrate
from merge3.methods.wudi import _gradient, adam, wudi_matrix
from merge3.recipe import parse_recipe

GOLDEN = Path(__file__).parent / "data" / "datafree_reference.safetensors"
# max |merge3 − reference| ≤ this × max |reference − θ_0|, per tensor (fp32 inputs). Most
# cases are bit-identical; WUDI (a closed-form gradient instead of autograd), SVC after
# task arithmetic (merge3's TA rounds differently before SVC's float64 SVD) and CART (θ_avg
# exactly where the authors add a zero sum of centred vectors) are within 1e-5.
RELATIVE_TOLERANCE = 2e-5

with safe_open(str(GOLDEN), "pt") as _f:
    _META = _f.metadata()
    CASES = json.loads(_META["cases"])
    SHAPES = json.loads(_META["shapes"])
    TASKS = int(_META["tasks"])
    BASE = {n: _f.get_tensor(f"input.base.{n}") for n in SHAPES}
    EXPERTS = [{n: _f.get_tensor(f"input.expert_{i}.{n}") for n in SHAPES} for i in range(TASKS)]
    REFERENCE = {c["case"]: {n: _f.get_tensor(f"{c['case']}.{n}") for n in SHAPES} for c in CASES}


def _recipe(method: str, parameters: dict, weights: list[float] | None = None, tasks: int = TASKS):
    models = [{"model": f"expert_{i}", **({"parameters": {"weight": weights[i]}} if weights
                                            else {})} for i in range(tasks)]
    return parse_recipe({"merge_method": method, "base_model": "base", "models": models,
                         "parameters": parameters})


def _merge(method: str, parameters: dict, *, base=None, experts=None, cache=None,
           weights=None) -> dict[str, torch.Tensor]:
    base = BASE if base is None else base
    experts = EXPERTS if experts is None else experts
    recipe = _recipe(method, parameters, weights, len(experts))
    return dict(merge_model(merge_job(recipe, num_layers=2), StateDict(base),
                            [StateDict(e) for e in experts], list(base), cache=cache))


def _relative_error(out: dict, reference: dict) -> dict[str, float]:
    return {n: float((out[n] - reference[n]).abs().max()
                     / (reference[n] - BASE[n]).abs().max().clamp_min(1e-30)) for n in SHAPES}


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_equal_to_the_reference_code(case):
    parameters = dict(case["parameters"])
    weights = parameters.pop("weight", None)
    out = _merge(case["method"], parameters, weights=weights)
    errors = _relative_error(out, REFERENCE[case["case"]])
    assert max(errors.values()) <= RELATIVE_TOLERANCE, (case["reference"], errors)


def test_the_golden_inputs_exercise_what_they_should():
    """Each case's output moved away from θ_0 in every matrix, and MagMax's tie entries
    (|τ_2| = |τ_0|, opposite signs) are present."""
    for case in CASES:
        for n in SHAPES:
            assert not torch.equal(REFERENCE[case["case"]][n], BASE[n]), (case["case"], n)
    for n in SHAPES:
        d0 = (EXPERTS[0][n] - BASE[n]).reshape(-1)[:3]
        d2 = (EXPERTS[2][n] - BASE[n]).reshape(-1)[:3]
        assert torch.allclose(d2, -d0, atol=1e-6)


# -- Iso-CTS ---------------------------------------------------------------------------------
def _authors_ranks(r: int, tasks: int, fraction: float) -> tuple[int, int]:
    """src/utils/iso.py of github.com/danielm1405/iso-merging, restated."""
    common = int(r * fraction)
    task_total = round((r - common) / tasks) * tasks
    common = r - task_total
    return common, int((r - common) / tasks)


@pytest.mark.parametrize("fraction", [0.5, 0.6, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("tasks", [2, 3, 4, 6, 8, 14])
def test_iso_cts_split_is_rounded_as_the_authors_code(tasks, fraction):
    for r in range(tasks + 1, 400):
        expected = _authors_ranks(r, tasks, fraction)
        if expected[0] < 0:
            continue  # the authors' code slices past its bases there
        assert iso_module.iso_cts_ranks(r, tasks, fraction) == expected, (r, tasks, fraction)
    # the ViT-B/32 (r = 768) and MiniLM (r = 384) cases: the task space is rounded up
    assert iso_module.iso_cts_ranks(384, 6, 0.8) == (306, 13)
    assert iso_module.iso_cts_ranks(10, 2, 0.5) == (6, 2)  # round(2.5) = 2, half to even


def test_iso_cts_floor_rounding_would_differ_from_the_reference(monkeypatch):
    """The golden case has a 24×30 matrix (r = 24, T = 3: 18 + 3·2, not 21 + 3·1): with the
    old rule (task space rounded down) merge3 misses FusionBench's output by far."""
    name = "layers.1.attn.o.weight"
    assert iso_module.iso_cts_ranks(24, 3, 0.8) == (18, 2)

    def floor_ranks(r, tasks, fraction):
        common = int(fraction * r)
        common += (r - common) % tasks
        return common, (r - common) // tasks

    monkeypatch.setattr(iso_module, "iso_cts_ranks", floor_ranks)
    old = _merge("iso_cts", {"common_fraction": 0.8})
    assert _relative_error(old, REFERENCE["iso_cts"])[name] > 1e-2


# -- the whole-model pass: exact k-th values -------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_streamed_kth_value_equals_kthvalue_of_the_concatenation(dtype):
    g = torch.Generator().manual_seed(3)
    parts = [[torch.randn(37, 5, generator=g, dtype=dtype), -torch.rand(61, generator=g,
                                                                        dtype=dtype)]
             for _ in range(4)]
    parts.append([torch.zeros(9, dtype=dtype), -torch.zeros(9, dtype=dtype)])  # ±0
    parts.append([torch.full((7,), 0.25, dtype=dtype), torch.full((7,), -2.0, dtype=dtype)])
    rows = [torch.cat([p[r].reshape(-1) for p in parts]) for r in range(2)]
    first = first_pass(lambda: iter(parts), 2)
    assert first.sizes == (len(rows[0]), len(rows[1]))
    for k in (1, 2, 9, 100, 190, 254, len(rows[1])):
        got = kth(lambda: iter(parts), first, [min(k, len(rows[0])), k])
        want = [float(torch.kthvalue(rows[0], min(k, len(rows[0]))).values),
                float(torch.kthvalue(rows[1], k).values)]
        assert got == want, k
    assert kth_values(lambda: iter(parts), [None, 5])[0] is None
    with pytest.raises(ValueError):
        kth(lambda: iter(parts), first, [0, 1])


# -- TIES: trim_scope ------------------------------------------------------------------------
def _lopsided(scale: float = 20.0):
    """A two-tensor model whose second tensor's task vectors are `scale`× larger."""
    g = torch.Generator().manual_seed(5)
    base = {"layers.0.a.weight": torch.randn(20, 10, generator=g),
            "layers.1.b.weight": torch.randn(20, 10, generator=g)}
    experts = [{"layers.0.a.weight": base["layers.0.a.weight"] + 0.01 * torch.randn(20, 10,
                                                                                   generator=g),
                "layers.1.b.weight": base["layers.1.b.weight"] + 0.01 * scale
                * torch.randn(20, 10, generator=g)} for _ in range(2)]
    return base, experts


def test_ties_model_scope_keeps_the_models_largest_entries_tensor_scope_each_tensors():
    base, experts = _lopsided()
    model = _merge("ties", {"density": 0.3, "trim_scope": "model"}, base=base, experts=experts)
    tensor = _merge("ties", {"density": 0.3}, base=base, experts=experts)
    moved = {scope: {n: float((out[n] != base[n]).float().mean()) for n in base}
             for scope, out in (("model", model), ("tensor", tensor))}
    # model-wide, nearly all kept entries are in the tensor with the large task vectors
    assert moved["model"]["layers.0.a.weight"] < 0.02 < 0.3 < moved["model"]["layers.1.b.weight"]
    # per tensor, each task keeps 30% of its entries there (the union of two: 30-60%)
    for n in base:
        assert 0.3 <= moved["tensor"][n] <= 0.6


def test_ties_model_scope_needs_one_density_per_model_and_a_known_scope():
    base, experts = _lopsided()
    with pytest.raises(RecipeError, match="density must hold for the whole model"):
        _merge("ties", {"density": [0.2, 0.6], "trim_scope": "model"}, base=base,
               experts=experts)
    with pytest.raises(RecipeError, match="trim_scope is 'layer'"):
        _merge("ties", {"density": 0.2, "trim_scope": "layer"}, base=base, experts=experts)
    # a gradient is fine per tensor
    _merge("ties", {"density": [0.2, 0.6]}, base=base, experts=experts)
    method = get_method("ties")
    with pytest.raises(MergeError, match="needs the whole model"):
        merge_tensor(method, "w", base["layers.0.a.weight"],
                     [e["layers.0.a.weight"] for e in experts], [{"density": 0.2}] * 2,
                     {"trim_scope": "model", "normalize": True, "lambda": 1.0,
                      "int8_mask": False})


def test_a_cache_keeps_the_density_free_pass_and_computes_the_same_numbers():
    base, experts = _lopsided()
    cache = MergeCache()
    for density in (0.3, 0.5, 0.3):
        params = {"density": density, "trim_scope": "model"}
        cached = _merge("ties", params, base=base, experts=experts, cache=cache)
        fresh = _merge("ties", params, base=base, experts=experts)
        assert all(torch.equal(cached[n], fresh[n]) for n in base)
    memo = cache.model_memo["ties"]
    assert set(memo) == {"first", (0.3, 0.3), (0.5, 0.5)}


# -- WUDI -------------------------------------------------------------------------------------
def test_adam_is_torch_adam_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(7, 5, generator=g)
    start = torch.randn(7, 5, generator=g)
    param = torch.nn.Parameter(start.clone())
    optimizer = torch.optim.Adam([param], lr=1e-2, weight_decay=0)
    for _ in range(50):
        loss = ((param - target) ** 3).abs().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def gradient(x):
        d = x - target
        return 3 * d.abs() ** 2 * torch.sign(d)

    mine = adam(start.clone(), gradient, 50, 1e-2)
    assert torch.allclose(mine, param.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(12, 8), (3, 40)])  # the Gram form, the per-task form
def test_wudi_gradient_is_the_gradient_of_the_papers_loss(shape):
    g = torch.Generator().manual_seed(1)
    deltas = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]
    norms = [float(d.pow(2).sum()) for d in deltas]
    merged = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    loss = sum(((merged - d) @ d.T).pow(2).sum() / c for d, c in zip(deltas, norms))
    loss.backward()
    gram = sum(d.T @ d / c for d, c in zip(deltas, norms))
    target = sum(d @ (d.T @ d) / c for d, c in zip(deltas, norms))
    for args in ((gram, target), (None, None)):
        grad = _gradient(merged.detach(), deltas, norms, *args)
        assert torch.allclose(grad, merged.grad, rtol=1e-10, atol=1e-10)


def test_wudi_lowers_the_interference_and_ignores_a_zero_task_vector():
    g = torch.Generator().manual_seed(2)
    deltas = [0.01 * torch.randn(16, 12, generator=g) for _ in range(3)]

    def loss(x):
        return sum(float(((x - d) @ d.T).pow(2).sum() / d.pow(2).sum()) for d in deltas)

    start = torch.stack(deltas).sum(0)
    solved = wudi_matrix(deltas, iterations=300, lr=1e-4)
    assert loss(solved) < 0.5 * loss(start)
    with_zero = wudi_matrix([*deltas, torch.zeros(16, 12)], iterations=300, lr=1e-4)
    assert torch.isfinite(with_zero).all() and torch.allclose(with_zero, solved, atol=1e-7)


# -- MagMax, SVC, CART, PCB -------------------------------------------------------------------
def test_magmax_picks_the_largest_magnitude_later_task_on_a_tie():
    base = torch.zeros(4)
    t1 = torch.tensor([1.0, -3.0, 0.5, 2.0])
    t2 = torch.tensor([-2.0, 1.0, -0.5, 1.0])
    out = magmax([t1, t2], base, weight=[1.0, 1.0], lambda_=1.0)
    assert out.tolist() == [-2.0, -3.0, -0.5, 2.0]  # entry 2: |0.5| = |-0.5|, t2 wins
    scaled = magmax([t1, t2], base, weight=[1.0, 4.0], lambda_=0.5)
    assert scaled.tolist() == [-4.0, 2.0, -1.0, 2.0]  # 4·t2 wins entries 0-3, halved


def test_svc_undoes_the_over_counting_of_identical_tasks():
    """K copies of one task: task arithmetic counts it K times (s_r = K for every r), SVC
    scales every direction by K/(K·K): back to the task itself. A single task is kept."""
    g = torch.Generator().manual_seed(4)
    base = torch.randn(10, 6, generator=g)
    expert = base + 0.1 * torch.randn(10, 6, generator=g)
    summed = base + 3 * (expert - base)
    assert torch.allclose(calibrate(summed, base, [expert] * 3), expert, atol=1e-6)
    assert torch.allclose(calibrate(expert, base, [expert]), expert, atol=1e-6)
    method = get_method("svc_task_arithmetic")
    merged = merge_tensor(method, "layers.0.w", base, [expert] * 3, [{"weight": 1.0}] * 3,
                          {**method.global_params, "svc_alpha": 0.1})
    assert torch.allclose(merged, expert, atol=1e-6)


def test_svc_wraps_every_base_method_and_checks_alpha():
    for name in METHODS.names():
        method = METHODS.get(name)
        if method.base == "required" and method.max_models is None and \
                not name.startswith("svc_"):
            wrapped = get_method(f"svc_{name}")
            assert wrapped.parameter_names == method.parameter_names | {"svc_alpha"}
            assert wrapped.per_model == method.per_model
    with pytest.raises(RecipeError, match="svc_alpha"):
        _merge("svc_ties", {"density": 0.2, "svc_alpha": 0.0})
    with pytest.raises(RecipeError, match="svc_alpha"):  # refused when parsed
        merge_job(_recipe("svc_ties", {"svc_alpha": -1.0}))


def test_cart_at_full_or_zero_rank_is_the_weight_average():
    for ratio in (0.0, 1.0):
        cart = _merge("cart", {"rank_ratio": ratio})
        for n in SHAPES:
            average = BASE[n] + sum(e[n] - BASE[n] for e in EXPERTS) / TASKS
            assert torch.allclose(cart[n], average, atol=1e-5), (ratio, n)


def test_cart_correction_is_low_rank():
    cart = _merge("cart", {"rank_ratio": 0.12, "lambda": 1.0})
    name = "layers.1.attn.o.weight"  # r = 24: k = max(1, int(0.12·24)) = 2 per task
    average = BASE[name] + sum(e[name] - BASE[name] for e in EXPERTS) / TASKS
    assert torch.linalg.matrix_rank(cart[name] - average, atol=1e-5) <= TASKS * 2
    matrix = torch.randn(9, 7, generator=torch.Generator().manual_seed(0))
    assert torch.linalg.matrix_rank(low_rank(matrix, 0.3)) == 2


def test_pcb_is_a_convex_combination_of_the_clamped_task_vectors():
    """Where some task's score survives, PCB's τ is a weighted mean of the (clamped) τ_i;
    where every score was dropped it is 0."""
    for scope in ("model", "tensor"):
        out = _merge("pcb", {"pcb_ratio": 0.2, "trim_scope": scope})
        dropped = 0
        for n in SHAPES:
            deltas = torch.stack([e[n] - BASE[n] for e in EXPERTS])
            merged = out[n] - BASE[n]
            kept = merged != 0
            dropped += int((~kept).sum())
            assert (merged[kept] <= deltas.max(0).values[kept] + 1e-6).all()
            assert (merged[kept] >= deltas.min(0).values[kept] - 1e-6).all()
        assert dropped > 0  # keeping 20% of each task's scores leaves some entries to none
    model = _merge("pcb", {"pcb_ratio": 0.2})
    tensor = _merge("pcb", {"pcb_ratio": 0.2, "trim_scope": "tensor"})
    assert any(not torch.allclose(model[n], tensor[n]) for n in SHAPES)  # the scope matters


def test_pcb_refuses_no_kept_scores_and_a_single_tensor_merge():
    with pytest.raises(RecipeError, match="pcb_ratio"):
        _merge("pcb", {"pcb_ratio": 0.0})
    method = get_method("pcb")
    with pytest.raises(MergeError, match="needs the whole model"):
        merge_tensor(method, "w", BASE["layers.0.attn.q.weight"],
                     [e["layers.0.attn.q.weight"] for e in EXPERTS], [{"weight": 1.0}] * 3,
                     dict(method.global_params))


@pytest.mark.parametrize("method", ["wudi", "magmax", "cart", "pcb"])
def test_new_methods_take_their_parameters_with_ranges(method):
    spec = get_method(method)
    assert "weight" in spec.per_model
    bounded = {"wudi": "iterations", "cart": "rank_ratio", "pcb": "pcb_ratio"}
    if method in bounded:
        key = bounded[method]
        assert key in spec.ranges
        with pytest.raises(RecipeError, match="outside the valid range"):
            merge_job(_recipe(method, {key: -1}))


# -- in a search ------------------------------------------------------------------------------
def test_a_search_worker_merges_whole_model_methods_as_merge3_merge_does(llama_family,
                                                                         tmp_path):
    """Candidates with other densities / ratios reuse the worker's whole-model pass and
    give the bits `merge3 merge` writes; the genome reaches the wrapped method's genes."""
    from merge3.checkpoints import Checkpoint
    from merge3.genome import Genome
    from merge3.merging import run_merge
    from search.materialize import Materializer

    names = ("expert_1", "expert_2", "expert_3")
    genome = Genome("svc_ties", {k: str(llama_family[k]) for k in names},
                    {"density": {"per": "model", "low": 0.1, "high": 0.9},
                     "svc_alpha": {"low": 0.05, "high": 0.5}},
                    base_model=str(llama_family["base"]), fixed={"trim_scope": "model"})
    worker = Materializer(Checkpoint(llama_family["base"]).state_dict(),
                          [Checkpoint(llama_family[k]).state_dict() for k in names])
    for i, (density, alpha) in enumerate([(0.2, 0.1), (0.6, 0.3), (0.2, 0.1)]):
        recipe = genome.decode({g: density if g.startswith("density") else alpha
                                for g in genome.names})
        assert genome.encode(recipe) == {g: density if g.startswith("density") else alpha
                                         for g in genome.names}
        merged = worker.materialize(recipe)
        on_disk = Checkpoint(run_merge(parse_recipe(recipe), tmp_path / f"m{i}",
                                       progress=False))
        for name in on_disk.names():
            assert torch.equal(merged[name], on_disk.get(name)), (i, name)
    memo = worker.cache.model_memo["svc_ties"]
    assert set(memo) == {"first", (0.2,) * 3, (0.6,) * 3}  # one pass per density
