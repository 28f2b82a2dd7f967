"""Write ``datafree_reference.safetensors``: inputs and the outputs of the reference code of
WUDI, MagMax, SVC, TIES (whole-model threshold) and Iso-CTS (FusionBench 0.2.33), CART
(its authors' ``src/merging.py``) and PCB (its authors' ``pcb-merging.py``), for
``tests/merge3/test_datafree_methods.py``.

CI has none of these, so their outputs are stored. This script runs the references
themselves: FusionBench imported from a throwaway venv, CART's and PCB's functions taken
with ``ast`` from the authors' repositories (nothing of theirs is copied into merge3):

    python3 -m venv /tmp/fb && /tmp/fb/bin/pip install torch==2.13.0 fusion-bench==0.2.33
    git clone https://github.com/JH-GEECS/CART /tmp/CART            # (any checkout)
    git clone https://github.com/duguodong7/pcb-merging /tmp/pcb
    /tmp/fb/bin/python tests/merge3/data/datafree_golden.py --cart /tmp/CART --pcb /tmp/pcb

``--cart``/``--pcb`` take a work tree or a bare git directory (read at HEAD).
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import typing
from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import save_file

OUT = Path(__file__).with_name("datafree_reference.safetensors")
TASKS = 3
# name -> shape: attention/MLP matrices (tall, wide, very wide), an embedding, 1-D tensors.
SHAPES = {
    "layers.0.attn.q.weight": (24, 16),
    "layers.0.mlp.up.weight": (16, 30),
    "layers.0.mlp.up.bias": (30,),
    "layers.1.mlp.down.weight": (4, 40),
    "layers.1.attn.o.weight": (24, 30),  # r = 24: Iso-CTS rounds its task space up
    "layers.1.ln.weight": (16,),
    "embed.weight": (12, 8),
}


def _read(repo: Path, path: str) -> tuple[str, str]:
    """(source text, commit) of ``path`` in a work tree or a git directory."""
    git = ["git", "-C", str(repo)] if (repo / ".git").exists() else ["git", "--git-dir",
                                                                      str(repo)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    text = subprocess.run([*git, "show", f"HEAD:{path}"], capture_output=True, text=True,
                          check=True).stdout
    return text, commit


def _functions(source: str, names: set[str], namespace: dict, cls: str | None = None) -> dict:
    """Exec only the named top-level functions (or methods of class ``cls``)."""
    tree = ast.parse(source)
    body = tree.body
    if cls is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == cls).body
    picked = [n for n in body if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name in names]
    exec(compile(ast.Module(body=picked, type_ignores=[]), "<reference>", "exec"), namespace)
    return {n.name: namespace[n.name] for n in picked}


def make_inputs(seed: int = 0) -> tuple[dict, list[dict]]:
    """A base and TASKS experts: low-rank task vectors with a shared direction plus noise,
    a few exact magnitude ties between tasks (MagMax's tie rule), no zero task vector."""
    g = torch.Generator().manual_seed(seed)
    base = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    shared = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    experts = []
    for _ in range(TASKS):
        expert = {}
        for n, s in SHAPES.items():
            if len(s) == 2:
                r = max(1, min(s) // 4)
                u, v = torch.randn(s[0], r, generator=g), torch.randn(r, s[1], generator=g)
                delta = 0.05 * (u @ v) / r ** 0.5 + 0.03 * shared[n]
            else:
                delta = 0.04 * torch.randn(s, generator=g) + 0.02 * shared[n]
            delta = delta + 0.01 * torch.randn(s, generator=g)
            expert[n] = base[n] + delta
        experts.append(expert)
    for n in SHAPES:  # |τ_2| == |τ_0| at the first 3 entries, opposite sign
        d0 = (experts[0][n] - base[n]).reshape(-1)
        e2 = experts[2][n].reshape(-1).clone()
        e2[:3] = base[n].reshape(-1)[:3] - d0[:3]
        experts[2][n] = e2.reshape(SHAPES[n])
    return base, experts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cart", type=Path, required=True, help="github.com/JH-GEECS/CART")
    parser.add_argument("--pcb", type=Path, required=True,
                        help="github.com/duguodong7/pcb-merging")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import fusion_bench
    from fusion_bench.method.isotropic_merging.iso_utils import iso_cts
    from fusion_bench.method.magmax.magmax import _magmax_select
    from fusion_bench.method.singular_value_calibration import utils as svc_utils
    from fusion_bench.method.ties_merging.ties_merging_utils import (
        state_dict_to_vector,
        ties_merging,
        vector_to_state_dict,
    )
    from fusion_bench.method.wudi.wudi import wudi_merging

    base, experts = make_inputs()
    tvs = [{n: e[n] - base[n] for n in SHAPES} for e in experts]
    tensors: dict[str, torch.Tensor] = {}
    for n in SHAPES:
        tensors[f"input.base.{n}"] = base[n]
        for i, e in enumerate(experts):
            tensors[f"input.expert_{i}.{n}"] = e[n]
    cases: list[dict] = []

    def add(case: str, method: str, parameters: dict, merged_tv: dict | None = None,
            merged: dict | None = None, reference: str = "") -> None:
        out = merged or {n: base[n] + merged_tv[n] for n in SHAPES}
        for n in SHAPES:
            tensors[f"{case}.{n}"] = out[n].detach().float().contiguous()
        cases.append({"case": case, "method": method, "parameters": parameters,
                      "reference": reference})

    # MagMax: the FusionBench default λ 0.5
    tau = _magmax_select(deepcopy(tvs))
    add("magmax", "magmax", {}, {n: 0.5 * tau[n] for n in SHAPES},
        reference="fusion_bench.method.magmax.magmax._magmax_select")

    # WUDI: FusionBench's solver (autograd, m×m products); embeddings excluded (the authors
    # solve the blocks' linear layers only)
    for iterations in (300, 40):
        merged = wudi_merging(deepcopy(tvs), accelerator="cpu", iter_num=iterations,
                              exclude_keys=["embed.weight"])
        add(f"wudi_{iterations}", "wudi", {"iterations": iterations},
            {n: merged[n].detach() for n in SHAPES},
            reference="fusion_bench.method.wudi.wudi.wudi_merging")

    # TIES with FusionBench's whole-model threshold (threshold 20 -> density 0.2)
    flat = torch.vstack([state_dict_to_vector(tv) for tv in tvs])
    for func, normalize in (("sum", False), ("mean", True)):
        merged_flat = ties_merging(flat.clone(), reset_thresh=20, merge_func=func)
        merged = vector_to_state_dict(merged_flat, tvs[0])
        add(f"ties_model_{func}", "ties",
            {"density": 0.2, "normalize": normalize, "lambda": 0.3, "trim_scope": "model"},
            {n: 0.3 * merged[n] for n in SHAPES},
            reference="fusion_bench.method.ties_merging.ties_merging_utils.ties_merging")
    ties_model = {n: base[n] + 0.3 * vector_to_state_dict(
        ties_merging(flat.clone(), reset_thresh=20, merge_func="sum"), tvs[0])[n]
        for n in SHAPES}

    # SVC (FusionBench's default, accelerated implementation) after task arithmetic
    # (λ 0.3, FusionBench's SVC config) and after TIES (its ties_merging config)
    inner = {"task_arithmetic": ({n: base[n] + 0.3 * sum(tv[n] for tv in tvs) for n in SHAPES},
                                 {"lambda": 0.3}),
             "ties": (ties_model, {"density": 0.2, "normalize": False, "lambda": 0.3,
                                   "trim_scope": "model"})}
    for name, (merged_inner, params) in inner.items():
        out = {}
        for n in SHAPES:
            if len(SHAPES[n]) != 2:
                out[n] = merged_inner[n]
                continue
            out[n] = svc_utils.subspace_consistency_spectral_calibration_accelerated(
                base_weight=base[n], task_weights=[e[n] for e in experts],
                merged_weight=merged_inner[n], alpha=0.1, accelerator="cpu")
        add(f"svc_{name}", f"svc_{name}", {**params, "svc_alpha": 0.1}, merged=out,
            reference="fusion_bench.method.singular_value_calibration.utils."
                      "subspace_consistency_spectral_calibration_accelerated")

    # Iso-CTS: FusionBench's copy of the authors' iso_cts (common fraction 0.8)
    merged = iso_cts(deepcopy(tvs), common_space_fraction=0.8, accelerator="cpu",
                     exclude_keys=["embed.weight"])
    add("iso_cts", "iso_cts", {"common_fraction": 0.8}, {n: merged[n] for n in SHAPES},
        reference="fusion_bench.method.isotropic_merging.iso_utils.iso_cts")

    # CART: the authors' StaticMergeModule methods, run on these state dicts
    cart_source, cart_commit = _read(args.cart, "src/merging.py")
    tv_source, _ = _read(args.cart, "src/models/task_vectors.py")
    namespace = {"torch": torch, "np": np, "deepcopy": deepcopy, "CPU_DEVICE": "cpu",
                 "tqdm": lambda x, **k: x,  # the names the CART code uses
                 **{n: getattr(typing, n) for n in ("List", "Optional", "Union", "Dict")}}
    from omegaconf import OmegaConf
    namespace["OmegaConf"] = OmegaConf
    _functions(tv_source, {"TaskVector"}, namespace)
    methods = _functions(cart_source, {"_get_truncated_task_vectors", "_get_origin",
                                       "_merge_weights"}, namespace, cls="StaticMergeModule")
    for prior, ratio in ((2.0, 0.12), (1.0, 0.5)):
        model = SimpleNamespace(state_dict=lambda: {n: v.clone() for n, v in base.items()})
        module = SimpleNamespace(
            config=SimpleNamespace(tasks=list(range(TASKS)), prior=prior,
                                   initial_rank_ratio=ratio),
            pretrained_model=model, device="cpu",
            task_vectors=[namespace["TaskVector"](vector=deepcopy(tv)) for tv in tvs])
        for key, func in methods.items():
            setattr(module, key, func.__get__(module))
        module._merge_weights("CART")
        add(f"cart_{ratio}", "cart", {"lambda": prior, "rank_ratio": ratio},
            merged=dict(module._merged_state_dict),
            reference=f"JH-GEECS/CART@{cart_commit[:7]} src/merging.py "
                      "StaticMergeModule._merge_weights('CART')")

    # PCB: the authors' PCB_merge over the whole flattened model, and per tensor
    pcb_source, pcb_commit = _read(args.pcb, "pcb-merging.py")
    pcb_ns: dict = {"torch": torch}
    pcb_merge = _functions(pcb_source, {"normalize", "clamp", "act", "PCB_merge"},
                           pcb_ns)["PCB_merge"]
    lams = torch.tensor([1.2, 0.8, 1.0]).unsqueeze(1)
    for ratio in (0.1, 0.3):
        merged_flat, clamped, scale = pcb_merge(flat.clone(), pcb_ratio=ratio)
        add(f"pcb_model_{ratio}", "pcb", {"pcb_ratio": ratio},
            vector_to_state_dict(merged_flat, tvs[0]),
            reference=f"duguodong7/pcb-merging@{pcb_commit[:7]} pcb-merging.py PCB_merge")
    # the authors' per-task coefficients (pcb_ES.py compute_acc: clamped·lams, same scale)
    merged_flat, clamped, scale = pcb_merge(flat.clone(), pcb_ratio=0.1)
    weighted = torch.sum(clamped * lams * scale, dim=0) / torch.clamp(scale.sum(0), min=1e-12)
    add("pcb_model_weighted", "pcb", {"pcb_ratio": 0.1, "weight": lams.squeeze(1).tolist()},
        vector_to_state_dict(weighted, tvs[0]),
        reference=f"duguodong7/pcb-merging@{pcb_commit[:7]} PCB_merge + pcb_ES compute_acc")
    per_tensor = {}
    for n in SHAPES:
        rows = torch.vstack([tv[n].reshape(-1) for tv in tvs])
        per_tensor[n] = pcb_merge(rows, pcb_ratio=0.1)[0].reshape(SHAPES[n])
    add("pcb_tensor", "pcb", {"pcb_ratio": 0.1, "trim_scope": "tensor"}, per_tensor,
        reference=f"duguodong7/pcb-merging@{pcb_commit[:7]} PCB_merge on each tensor")

    metadata = {"cases": json.dumps(cases), "shapes": json.dumps(SHAPES),
                "tasks": str(TASKS), "fusion_bench": fusion_bench.__version__
                if hasattr(fusion_bench, "__version__") else "0.2.33",
                "torch": torch.__version__, "cart_commit": cart_commit,
                "pcb_commit": pcb_commit}
    save_file(tensors, str(OUT), metadata=metadata)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
