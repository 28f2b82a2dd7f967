"""Write mergekit 0.1.5's outputs on small tensors for the CI test of merge3's kernels.

CI has no mergekit, so ``tests/merge3/test_mergekit_methods.py`` compares merge3's
kernels with outputs that mergekit itself computed, stored with their inputs in
``tests/merge3/data/mergekit_0.1.5_kernels.safetensors`` (the cases as JSON in its
metadata). Rerun after changing the cases (needs ``benchmarks/setup_mergekit.sh``):

    .venv/bin/python benchmarks/mergekit_parity/golden.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MERGEKIT_PYTHON = ROOT / ".venv-mergekit" / "bin" / "python"
TARGET = ROOT / "tests" / "merge3" / "data" / "mergekit_0.1.5_kernels.safetensors"


def inputs() -> dict[str, torch.Tensor]:
    """A base and three experts as a matrix (16 × 12, low rank plus noise) and a vector,
    and a "mirror" pair: the matrix's first expert and its reflection through the base
    (antipodal task vectors, where multislerp and nuslerp fall back to linear)."""
    g = torch.Generator().manual_seed(17)
    base = torch.randn(16, 12, generator=g)
    vector = torch.randn(12, generator=g)
    out = {"matrix.base": base, "vector.base": vector}
    for i in range(1, 4):
        low_rank = torch.randn(16, 1, generator=g) @ torch.randn(1, 12, generator=g)
        out[f"matrix.expert_{i}"] = base + 0.05 * torch.randn(16, 12, generator=g) + 0.03 * low_rank
        out[f"vector.expert_{i}"] = vector + 0.1 * torch.randn(12, generator=g)
    out["mirror.base"] = base.clone()
    out["mirror.expert_1"] = out["matrix.expert_1"].clone()
    out["mirror.expert_2"] = 2 * base - out["matrix.expert_1"]
    return out


# (key, method, shape family, base?, experts, mergekit parameters, seed)
CASES: list[tuple[str, str, str, bool, int, dict[str, Any], int]] = [
    ("model_stock", "model_stock", "matrix", True, 3, {}, 0),
    ("model_stock_filter_wise", "model_stock", "matrix", True, 2, {"filter_wise": True}, 0),
    ("model_stock_vector", "model_stock", "vector", True, 3, {}, 0),
    ("karcher", "karcher", "matrix", False, 3, {}, 0),
    ("karcher_iterations", "karcher", "vector", False, 2, {"max_iter": 3, "tol": 1e-7}, 0),
    ("multislerp", "multislerp", "matrix", False, 3, {"weight": [0.2, 0.5, 0.3]}, 0),
    ("multislerp_base", "multislerp", "matrix", True, 3,
     {"weight": [1.0, 2.0, 1.0], "normalize_weights": True}, 0),
    ("nuslerp", "nuslerp", "matrix", False, 2, {"weight": [0.3, 0.7]}, 0),
    ("nuslerp_rows_base", "nuslerp", "matrix", True, 2,
     {"weight": [1.0, 0.5], "nuslerp_flatten": False}, 0),
    ("nuslerp_columns", "nuslerp", "matrix", False, 2,
     {"weight": [0.6, 0.4], "nuslerp_flatten": False, "nuslerp_row_wise": True}, 0),
    ("nearswap", "nearswap", "matrix", True, 1, {"t": 0.02}, 0),
    ("arcee_fusion", "arcee_fusion", "matrix", True, 1, {}, 0),
    ("arcee_fusion_vector", "arcee_fusion", "vector", True, 1, {}, 0),
    ("ram", "ram", "matrix", True, 3, {"epsilon": 0.04}, 0),
    ("ramplus_tl", "ramplus_tl", "matrix", True, 3, {"epsilon": 0.04, "r": 0.5, "alpha": 0.4}, 0),
    ("sce", "sce", "matrix", True, 3, {}, 0),
    ("sce_select_topk", "sce", "matrix", True, 3, {"select_topk": 0.3}, 0),
    ("passthrough_scale", "passthrough", "matrix", False, 1, {"scale": [0.5]}, 0),
    ("della", "della", "matrix", True, 3,
     {"weight": [1.0, 0.6, 0.9], "density": [0.5, 0.7, 0.3], "epsilon": [0.1, 0.2, 0.05]}, 5),
    ("della_vector", "della", "vector", True, 3,
     {"weight": [1.0, 1.0, 1.0], "density": [0.5, 0.6, 0.4]}, 6),
    ("della_no_rescale", "della", "matrix", True, 2,
     {"weight": [0.7, 1.2], "density": [0.6, 0.4], "rescale": False, "lambda": 0.8}, 7),
    ("della_linear", "della_linear", "matrix", True, 3,
     {"weight": [1.0, 0.6, 0.9], "density": [0.5, 0.7, 0.3], "lambda": 1.3}, 8),
    # edge paths: a model that draws nothing (density 1), normalised della_linear, an SCE
    # selection that keeps no entry, antipodal task vectors, passthrough without scale
    ("della_density_one", "della", "matrix", True, 3,
     {"weight": [0.8, 1.0, 0.5], "density": [1.0, 0.4, 0.6]}, 9),
    ("della_linear_normalize", "della_linear", "vector", True, 2,
     {"weight": [0.3, 0.9], "density": [0.5, 0.5], "epsilon": [0.3, 0.1],
      "normalize": True}, 10),
    ("sce_select_none", "sce", "matrix", True, 3, {"select_topk": 0.004}, 0),
    ("multislerp_antipodal", "multislerp", "mirror", True, 2, {"weight": [1.0, 1.0]}, 0),
    ("nuslerp_antipodal_rows", "nuslerp", "mirror", True, 2,
     {"weight": [1.0, 3.0], "nuslerp_flatten": False}, 0),
    ("karcher_with_base", "karcher", "matrix", True, 2, {}, 0),
    ("nearswap_vector", "nearswap", "vector", True, 1, {"t": 0.05}, 0),
    ("passthrough", "passthrough", "vector", False, 1, {}, 0),
]


def main() -> int:
    if not MERGEKIT_PYTHON.exists():
        print(f"{MERGEKIT_PYTHON} is missing: run benchmarks/setup_mergekit.sh first.",
              file=sys.stderr)
        return 2
    tensors = inputs()
    cases = {}
    for key, method, family, has_base, experts, params, seed in CASES:
        models = [tensors[f"{family}.expert_{i}"] for i in range(1, experts + 1)]
        cases[key] = {"method": method, "has_base": has_base, "parameters": params,
                      "seed": seed, "name": f"model.layers.0.{family}",
                      "tensors": ([tensors[f"{family}.base"]] if has_base else []) + models}
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(cases, Path(tmp) / "in.pt")
        subprocess.run([str(MERGEKIT_PYTHON), str(HERE / "mergekit_kernels.py"),
                        str(Path(tmp) / "in.pt"), str(Path(tmp) / "out.pt")], check=True)
        merged = torch.load(Path(tmp) / "out.pt")
    version = subprocess.run([str(MERGEKIT_PYTHON), "-c", "import importlib.metadata as m, "
                              "torch; print(m.version('mergekit'), torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    spec = [{"key": key, "method": method, "family": family, "has_base": has_base,
             "experts": experts, "parameters": params, "seed": seed}
            for key, method, family, has_base, experts, params, seed in CASES]
    save_file({**tensors, **{f"out.{k}": v.contiguous() for k, v in merged.items()}},
              str(TARGET), metadata={"cases": json.dumps(spec), "mergekit": version[0],
                                     "torch": version[1]})
    TARGET.chmod(0o644)
    print(f"wrote {len(CASES)} cases to {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
