"""Run mergekit's merge kernels on given tensors, seeding torch's global generator first.

Runs in ``.venv-mergekit`` (mergekit 0.1.5 and torch only), called by ``run.py``:

    .venv-mergekit/bin/python benchmarks/mergekit_parity/mergekit_kernels.py IN.pt OUT.pt

IN.pt holds a dict of cases, each ``{"method", "tensors" (the base first), "has_base",
"parameters", "seed", "name"}``; OUT.pt gets each case's merged tensor under its key.
mergekit's random methods draw from torch's global generator, so seeding it right before
a kernel gives the draws a merge3 kernel makes from a generator seeded the same.
"""

from __future__ import annotations

import sys

import torch
from mergekit import merge_methods
from mergekit.merge_methods.base import TensorGroup


def main(source: str, target: str) -> None:
    cases = torch.load(source)
    merged = {}
    for key, case in cases.items():
        method = merge_methods.get(case["method"])
        group = TensorGroup.from_tensors(case["tensors"], name=case["name"],
                                         base_index=0 if case["has_base"] else None)
        torch.manual_seed(case["seed"])
        (merged[key],) = method((group,), parameters=case["parameters"])
    torch.save(merged, target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
