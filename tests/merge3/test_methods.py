"""Every merge method on real tiny checkpoints, and each algorithm's defining property."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from merge3.checkpoints import Checkpoint
from merge3.executor import merge_tensor
from merge3.merging import run_merge
from merge3.methods import METHODS, get_method
from merge3.methods.iso import iso_c_matrix, iso_cts_matrix, iso_cts_ranks
from merge3.methods.sparsify import dare_drop, outlier_mask
from merge3.methods.task_arithmetic import ties
from merge3.methods.tsv import (
    compress_task_vector,
    load_factors,
    orthogonalize,
    save_factors,
    singular_task_interference,
    storage_ratio,
    svd,
    task_singular_vectors,
    truncated_svd,
    tsv_merge_matrix,
)
from merge3.recipe import parse_recipe

SPARSE = {"ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties"}


def recipe_for(method: str, base, models, **params):
    spec = METHODS.get(method)
    data = {"merge_method": method, "models": [{"model": str(m)} for m in models],
            "parameters": params}
    if spec.base != "unused":
        data["base_model"] = str(base)
    return parse_recipe(data)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_keeps_names_shapes_dtypes(method, gpt2_family, tmp_path):
    experts = [gpt2_family["expert_1"], gpt2_family["expert_2"]]
    if METHODS.get(method).max_models == 1:
        experts = experts[:1]
    params = {"density": 0.5} if method in SPARSE else {}
    out = run_merge(recipe_for(method, gpt2_family["base"], experts, **params), tmp_path / "m",
                    progress=False, out_shard_size="60KB")
    base, merged = Checkpoint(gpt2_family["base"]), Checkpoint(out)
    assert merged.names() == base.names() or set(merged.names()) == set(base.names())
    for name in base.names():
        assert merged.info(name).shape == base.info(name).shape
        assert merged.info(name).dtype == base.info(name).dtype == torch.bfloat16
        assert torch.isfinite(merged.get(name).float()).all()
    differs = any(not torch.equal(merged.get(n), base.get(n)) for n in base.names())
    assert differs, "a merge of experts must move away from the base"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == 44


@pytest.mark.parametrize("method", list(METHODS))
def test_merging_a_model_with_itself_returns_it(method, llama_family, tmp_path):
    base = llama_family["base"]
    twin = tmp_path / "twin"
    shutil.copytree(base, twin)
    spec = METHODS.get(method)
    models = [twin] if spec.max_models == 1 else [twin, twin]
    params = {"density": 0.5} if method in SPARSE else {}
    out = run_merge(recipe_for(method, base, models, **params), tmp_path / "m", progress=False)
    original, merged = Checkpoint(base), Checkpoint(out)
    for name in original.names():
        torch.testing.assert_close(merged.get(name), original.get(name), atol=1e-5, rtol=1e-5)


def test_ties_hand_computed():
    base = torch.zeros(4)
    t1 = torch.tensor([3.0, -1.0, 0.5, 2.0])
    t2 = torch.tensor([-1.0, -2.0, 1.0, -3.0])
    t3 = torch.tensor([2.0, 1.0, -0.2, 1.5])
    # density 0.5 keeps each vector's 2 largest magnitudes:
    # t1 -> [3, 0, 0, 2]; t2 -> [0, -2, 0, -3]; t3 -> [2, 0, 0, 1.5]
    # elected sign of the sums [5, -2, 0, 0.5] -> [+, -, +, +]
    # agreeing entries: e0: 3, 2 -> mean 2.5; e1: -2 -> -2; e2: none -> 0; e3: 2, 1.5 -> 1.75
    out = ties([t1, t2, t3], base, weight=[1.0, 1.0, 1.0], density=[0.5, 0.5, 0.5])
    assert torch.equal(out, torch.tensor([2.5, -2.0, 0.0, 1.75]))
    unnormalised = ties([t1, t2, t3], base, weight=[1.0] * 3, density=[0.5] * 3,
                        normalize=False, lambda_=0.5)
    assert torch.equal(unnormalised, torch.tensor([2.5, -1.0, 0.0, 1.75]))


def test_dare_expectation_is_the_undropped_vector():
    delta = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([dare_drop(delta, 0.3, gen) for _ in range(3000)])
    kept = draws != 0
    assert torch.allclose(draws[kept], (delta.expand_as(draws) / 0.3)[kept])
    assert kept.float().mean().item() == pytest.approx(0.3, abs=0.01)
    # mean of 3000 draws: standard error |δ|·sqrt((1-p)/p/3000) ≈ 0.028|δ|; allow 6 s.e.
    error = (draws.mean(0) - delta).abs()
    assert (error <= 6 * delta.abs() * (0.7 / 0.3 / 3000) ** 0.5 + 1e-6).all()


def test_dare_is_reproducible_per_seed(llama_family, tmp_path):
    experts = [llama_family["expert_1"], llama_family["expert_2"]]
    outs = []
    for i, seed in enumerate((7, 7, 8)):
        recipe = recipe_for("dare_ties", llama_family["base"], experts, density=0.5)
        recipe.seed = seed
        outs.append(Checkpoint(run_merge(recipe, tmp_path / f"m{i}", progress=False)))
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(outs[0].get(name), outs[1].get(name))
    assert not torch.equal(outs[0].get(name), outs[2].get(name))


def test_breadcrumbs_mask_drops_outliers_and_small_values():
    delta = torch.arange(1.0, 101.0)
    mask = outlier_mask(delta, density=0.5, gamma=0.1)
    kept = delta[mask]
    assert kept.numel() == 50 and kept.min() == 41 and kept.max() == 90


def test_consensus_hand_computed():
    base = torch.zeros(3)
    t1, t2, t3 = torch.tensor([1.0, 0.1, 2.0]), torch.tensor([1.0, 0.0, -2.0]), torch.zeros(3)
    out = get_method("consensus")([t1, t2, t3], base, weight=[1.0] * 3, mask_lambda=[1.0] * 3,
                                  k=2)
    # masks |τ_t| ≥ |Σ_{s≠t} τ_s|: e0: t1 1≥1 ✓, t2 1≥1 ✓ -> kept; e1: only t1 -> dropped;
    # e2: t1 2≥2 ✓, t2 2≥2 ✓ -> kept (sum 0)
    assert torch.equal(out, torch.tensor([2.0, 0.0, 0.0]))


def test_slerp_endpoints_and_norm():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    slerp = get_method("slerp")
    assert torch.allclose(slerp([b], a, t=0.0), a)
    assert torch.allclose(slerp([b], a, t=1.0), b)
    mid = slerp([b], a, t=0.5)
    assert torch.allclose(mid, torch.tensor([2**-0.5, 2**-0.5]))  # on the circle, not the chord


def _task_deltas(count=3, m=24, n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(m, n, generator=gen, dtype=torch.float64) for _ in range(count)]


def test_tsv_m_orthonormal_factors_and_spectrum():
    deltas = _task_deltas()
    k = 16 // 3
    u, s, v = task_singular_vectors(deltas, k)
    u_perp, v_perp = orthogonalize(u), orthogonalize(v)
    eye = torch.eye(u.shape[1], dtype=torch.float64)
    assert torch.allclose(u_perp.T @ u_perp, eye, atol=1e-10)
    assert torch.allclose(v_perp.T @ v_perp, eye, atol=1e-10)
    merged = tsv_merge_matrix(deltas, k)
    spectrum = torch.linalg.svdvals(merged)[: len(s)]
    assert torch.allclose(spectrum, torch.sort(s, descending=True).values, atol=1e-10)
    assert singular_task_interference(u, s, v) > 1.0
    assert singular_task_interference(u_perp, s, v_perp) < 1e-10


def test_svd_converges_where_float32_lapack_does_not():
    """A real matrix Iso-CTS orthogonalised in a zoo build (two experts, layer 0's query):
    float32 gesdd on one thread fails on it; ``svd`` retries in float64."""
    from pathlib import Path

    from safetensors.torch import load_file

    matrix = load_file(Path(__file__).parent / "data" / "gesdd_nonconvergent.safetensors")["matrix"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        u, s, vh = svd(matrix)
        polar = orthogonalize(matrix)
    finally:
        torch.set_num_threads(threads)
    assert u.dtype == s.dtype == vh.dtype == torch.float32
    torch.testing.assert_close(u @ torch.diag(s) @ vh, matrix, atol=1e-5, rtol=0)
    eye = torch.eye(matrix.shape[1])
    torch.testing.assert_close(polar.T @ polar, eye, atol=1e-4, rtol=0)


def test_tsv_m_per_task_weights_scale_blocks():
    deltas = _task_deltas(2)
    u, s, _ = task_singular_vectors(deltas, 4, weights=[1.0, 0.0])
    assert torch.all(s[4:] == 0) and torch.all(s[:4] > 0)


def test_iso_c_spectrum_is_flat():
    deltas = _task_deltas()
    total = sum(deltas)
    iso = iso_c_matrix(total)
    spectrum = torch.linalg.svdvals(iso)
    expected = torch.linalg.svdvals(total).mean()
    assert torch.allclose(spectrum, expected.expand_as(spectrum), atol=1e-10)


@pytest.mark.parametrize(
    ("r", "tasks", "f"), [(16, 3, 0.8), (64, 8, 0.8), (10, 4, 0.5), (7, 2, 0.9)]
)
def test_iso_cts_ranks_add_up(r, tasks, f):
    k_common, k_task = iso_cts_ranks(r, tasks, f)
    assert k_common + tasks * k_task == r
    assert k_common >= 0 and k_task >= 0  # the rounding itself: test_datafree_methods.py


def test_iso_cts_matrix_flat_with_full_rank():
    deltas = _task_deltas(3, 24, 16)
    merged = iso_cts_matrix(deltas, 0.5)
    spectrum = torch.linalg.svdvals(merged)
    assert torch.allclose(spectrum, spectrum[0].expand_as(spectrum), atol=1e-8)
    assert torch.linalg.matrix_rank(merged) == 16


def test_tsv_c_factors_round_trip(llama_family, tmp_path):
    from merge3.task_vectors import TaskVector

    tau = TaskVector.from_checkpoints(llama_family["base"], llama_family["expert_1"])
    factors = compress_task_vector(tau, k_fraction=0.25)
    path = save_factors(factors, tmp_path / "tsv_c.safetensors")
    rebuilt = load_factors(path)
    assert set(rebuilt) == set(tau)
    name = "model.layers.1.mlp.down_proj.weight"
    m, n = tau[name].shape
    k = int(0.25 * min(m, n))
    u, s, v = truncated_svd(tau[name], k)
    assert torch.allclose(rebuilt[name], (u * s) @ v.T, atol=1e-5)
    assert torch.equal(rebuilt["model.norm.weight"], tau["model.norm.weight"])
    ratio = storage_ratio(factors, tau)
    assert 0 < ratio < 1
    assert factors[f"{name}.U"].numel() + k + factors[f"{name}.V"].numel() == k * (m + n + 1)


def test_gradient_parameters_follow_layers(llama_family, tmp_path):
    """weight: [1, 0] on model A and [0, 1] on model B: layer 0 is A, the last layer B."""
    a, b = llama_family["expert_1"], llama_family["expert_2"]
    recipe = parse_recipe({
        "merge_method": "linear",
        "models": [{"model": str(a), "parameters": {"weight": [1.0, 0.0]}},
                   {"model": str(b), "parameters": {"weight": [0.0, 1.0]}}],
    })
    merged = Checkpoint(run_merge(recipe, tmp_path / "m", progress=False))
    ca, cb = Checkpoint(a), Checkpoint(b)
    first, last = "model.layers.0.mlp.up_proj.weight", "model.layers.2.mlp.up_proj.weight"
    middle = "model.layers.1.mlp.up_proj.weight"
    assert torch.equal(merged.get(first), ca.get(first))
    assert torch.equal(merged.get(last), cb.get(last))
    assert torch.allclose(merged.get(middle), (ca.get(middle) + cb.get(middle)) / 2, atol=1e-6)
    # outside the layers t = 0 (mergekit's convention): embeddings come from A
    assert torch.equal(merged.get("model.embed_tokens.weight"), ca.get("model.embed_tokens.weight"))


def test_filters_pick_values_by_tensor_name():
    method = get_method("task_arithmetic")
    base, model = torch.zeros(2), torch.ones(2)
    settings = [{"weight": [{"filter": "mlp", "value": 2.0}, {"value": 0.5}]}]
    from merge3.recipe import ModelEntry

    entry = ModelEntry(model="x", parameters=settings[0])
    mlp = merge_tensor(method, "layers.0.mlp.w", base, [model], [entry.parameters], {})
    attn = merge_tensor(method, "layers.0.attn.w", base, [model], [entry.parameters], {})
    assert torch.equal(mlp, torch.full((2,), 2.0))
    assert torch.equal(attn, torch.full((2,), 0.5))


def test_integer_buffers_are_copied_from_the_base(tmp_path):
    from safetensors.torch import save_file

    for name, shift in (("base", 0.0), ("a", 1.0)):
        (tmp_path / name).mkdir()
        save_file({"w": torch.zeros(2) + shift, "pos": torch.arange(3) + int(shift)},
                  str(tmp_path / name / "model.safetensors"))
    out = run_merge(recipe_for("task_arithmetic", tmp_path / "base", [tmp_path / "a"]),
                    tmp_path / "m", progress=False)
    merged = Checkpoint(out)
    assert torch.equal(merged.get("pos"), torch.arange(3))
    assert torch.equal(merged.get("w"), torch.ones(2))


def test_output_dtype_and_fp32_arithmetic(llama_family, tmp_path):
    recipe = recipe_for("task_arithmetic", llama_family["base"],
                        [llama_family["expert_1"], llama_family["expert_2"]], **{"lambda": 0.5})
    recipe.dtype = "bfloat16"
    merged = Checkpoint(run_merge(recipe, tmp_path / "m", progress=False))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert merged.info(name).dtype == torch.bfloat16
    base, a, b = (Checkpoint(llama_family[k]).get(name) for k in ("base", "expert_1", "expert_2"))
    expected = (base + 0.5 * ((a - base) + (b - base))).to(torch.bfloat16)
    assert torch.equal(merged.get(name), expected)


@pytest.mark.parametrize("method", ["task_arithmetic", "linear"])
def test_elementwise_methods_give_the_same_result_in_slices(method, gpt2_family, tmp_path,
                                                            monkeypatch):
    import merge3.merging

    recipe = recipe_for(method, gpt2_family["base"],
                        [gpt2_family["expert_1"], gpt2_family["expert_2"]],
                        weight=[0.3, 1.1], **({"lambda": 0.7} if method != "linear" else {}))
    whole = Checkpoint(run_merge(recipe, tmp_path / "whole", progress=False))
    monkeypatch.setattr(merge3.executor, "CHUNK_ELEMENTS", 100)  # every tensor in many slices
    sliced = Checkpoint(run_merge(recipe, tmp_path / "sliced", progress=False))
    for name in whole.names():
        assert torch.equal(whole.get(name), sliced.get(name)), name


@pytest.mark.parametrize("method", ["tsv_m", "tsv_c", "iso_c", "iso_cts"])
def test_svd_methods_leave_an_untouched_matrix_alone(method):
    """A weight no task moved (a pooler mean pooling never trains) stays the base's."""
    base = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    out = get_method(method)([base.clone(), base.clone(), base.clone()], base,
                             weight=[1.0, 1.0, 1.0], name="pooler.dense.weight")
    assert torch.equal(out, base)
