"""Materialise candidates into a resident bf16 Llama on one GPU capped at 24 GiB (issue #15).

What a search worker does per candidate on a GPU, at 7B shape, with nothing but torch and
transformers installed: a synthetic Llama (default 7B-shaped: hidden 4096, 32 layers, MLP
11008, 32 heads, vocab 32000, untied head) is built in bf16 directly on the device as the
resident evaluator's model; its initial weights are the base, kept on the host in bf16
(pinned on CUDA), as a worker keeps the base in its file's page cache; three experts are
held on the device as TSV-C low-rank factors (rank r per 2-D matrix, random but
deterministic, built factor by factor: no full float32 model ever exists). Each candidate
(random per-expert weights; TIES also random densities) is merged tensor by tensor with
merge3's registered kernels and written into the resident model's parameters in place.
Prints a markdown table: ms per candidate (median after a warm-up), peak device memory
(``torch.cuda.max_memory_allocated``), peak host RSS; ``--json`` writes the numbers.

    python benchmarks/scale/gpu_check.py --device cuda                  # 7B, 24 GiB cap
    python benchmarks/scale/gpu_check.py --device cpu --hidden 256 --layers 4 \\
        --intermediate 688 --heads 8 --vocab 4096                      # the CPU path

Why the kernels and not ``merge3.executor.merge_model``: the executor imports
``merge3.recipe``, which needs pydantic, and the GPU machine has only torch and
transformers. The per-tensor step here is what ``merge_tensor`` does for these methods
(inputs to float32 on the device, the registered method, the result cast to the model's
bf16); tests/merge3/test_gpu_check.py checks the resident parameters bit for bit against
``search.materialize.Materializer`` (``merge_model``) of the same decoded recipe.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from merge3.methods import MergeMethod, get_method  # noqa: E402  (merge3's own kernels)

GIB = 2**30
METHODS = ("task_arithmetic", "ties")


@dataclass(frozen=True, slots=True)
class LlamaShape:
    """A Llama's sizes (default: Llama-2-7B's, 6.74B parameters)."""

    hidden: int = 4096
    layers: int = 32
    intermediate: int = 11008
    heads: int = 32
    kv_heads: int = 32
    vocab: int = 32000


def build_model(shape: LlamaShape, device: torch.device, seed: int) -> torch.nn.Module:
    """A randomly initialised Llama in bf16, allocated on ``device`` (never in float32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden,
                         intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
                         num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                         max_position_embeddings=256, tie_word_embeddings=False)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # parameters are created in bf16 straight away
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)


def _generator(device: torch.device, seed: int, expert: int, name: str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(
        seed * 1_000_003 + expert * 7_919 + zlib.crc32(name.encode()))


@dataclass
class FactorExpert:
    """One expert as ``merge3.lowrank.LowRankExpert`` holds it: rank-r factors (u, s, vh) per
    2-D matrix, other tensors (norms) as they are; ``get`` rebuilds θ_0 + (u·s)@vh in float32
    from the base's tensor and casts to the base's dtype, as ``LowRankExpert.get`` does."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default_factory=dict)  # name -> (u, s, vh)
    kept: dict[str, torch.Tensor] = field(default_factory=dict)

    def get(self, name: str, base: torch.Tensor) -> torch.Tensor:
        if name in self.kept:
            return self.kept[name]
        u, s, vh = self.factors[name]
        return (base.float() + (u.float() * s.float()) @ vh.float()).to(base.dtype)

    @property
    def nbytes(self) -> int:
        tensors = [t for f in self.factors.values() for t in f] + list(self.kept.values())
        return sum(t.numel() * t.element_size() for t in tensors)


def make_expert(model: torch.nn.Module, index: int, rank: int, *, seed: int,
                scale: float = 2e-3, factor_dtype: torch.dtype = torch.bfloat16
                ) -> FactorExpert:
    """Random rank-``rank`` task vectors with entries of r.m.s. about ``scale`` (a fine-tune's
    size against the 0.02 init), with a 1/k singular spectrum, built on the model's device."""
    expert = FactorExpert()
    for name, param in model.named_parameters():
        gen = _generator(param.device, seed, index, name)
        if param.dim() == 2 and min(param.shape) > 1:
            m, n = param.shape
            r = min(rank, m, n)
            u = torch.randn(m, r, generator=gen, device=param.device) / m**0.5
            vh = torch.randn(r, n, generator=gen, device=param.device) / n**0.5
            spectrum = 1.0 / torch.arange(1, r + 1, device=param.device, dtype=torch.float32)
            s = spectrum / spectrum.norm() * scale * (m * n) ** 0.5
            expert.factors[name] = (u.to(factor_dtype), s.to(factor_dtype), vh.to(factor_dtype))
        else:
            noise = torch.randn(param.shape, generator=gen, device=param.device)
            expert.kept[name] = (param.float() + scale * noise).to(param.dtype)
    return expert


def host_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base: the model's initial parameters copied to host memory (pinned for CUDA)."""
    pin = next(model.parameters()).device.type == "cuda"
    return {name: torch.empty(p.shape, dtype=p.dtype, pin_memory=pin).copy_(p)
            for name, p in model.named_parameters()}


def candidates(method: str, count: int, experts: int, seed: int) -> list[dict[str, list[float]]]:
    """``count`` genomes' per-model parameters: weights in [0.2, 1], TIES densities in
    [0.2, 0.8], drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        params = {"weight": (0.2 + 0.8 * torch.rand(experts, generator=gen)).tolist()}
        if method == "ties":
            params["density"] = (0.2 + 0.6 * torch.rand(experts, generator=gen)).tolist()
        out.append(params)
    return out


def recipe(method: str, per_model: dict[str, list[float]]) -> dict[str, Any]:
    """The decoded recipe of a candidate (experts named expert_0.. in this script's order)."""
    count = len(per_model["weight"])
    return {"merge_method": method, "base_model": "base", "dtype": "bfloat16",
            "models": [{"model": f"expert_{i}",
                        "parameters": {k: v[i] for k, v in per_model.items()}}
                       for i in range(count)]}


def merged_tensors(method: MergeMethod, per_model: dict[str, list[float]],
                   model: torch.nn.Module, base: dict[str, torch.Tensor],
                   experts: list[FactorExpert]
                   ) -> Iterator[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, its merged float32 tensor), one tensor at a time: the base's tensor is
    copied to the device, each expert rebuilt on it, all to float32, the kernel run (as
    ``merge3.executor.merge_tensor`` does, with the method's default global parameters)."""
    params: dict[str, Any] = {**method.global_params, **per_model}
    for name, param in model.named_parameters():
        base_tensor = base[name].to(param.device, non_blocking=True)
        inputs = [e.get(name, base_tensor).float() for e in experts]
        merged = method(inputs, base_tensor.float(), name=name, **params)
        del inputs
        if not bool(torch.isfinite(merged.sum())):
            raise RuntimeError(f"{method.name}: tensor {name!r} merged to NaN/Inf")
        yield param, merged


def materialize(method: MergeMethod, per_model: dict[str, list[float]], model: torch.nn.Module,
                base: dict[str, torch.Tensor], experts: list[FactorExpert]) -> None:
    """Write one candidate into ``model``'s parameters in place (cast to their bf16)."""
    with torch.no_grad():
        for param, merged in merged_tensors(method, per_model, model, base, experts):
            param.copy_(merged)
            del merged


@dataclass
class Resident:
    """A worker's state: the resident model (the candidates' destination), the base on the
    host, the experts' factors on the device."""

    model: torch.nn.Module
    base: dict[str, torch.Tensor]
    experts: list[FactorExpert]
    setup_s: float

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def setup(shape: LlamaShape, device: torch.device, *, rank: int = 16, experts: int = 3,
          seed: int = 0) -> Resident:
    """Build the resident model on ``device``, copy its weights to the host as the base, and
    draw ``experts`` low-rank experts on ``device``."""
    start = time.perf_counter()
    model = build_model(shape, device, seed)
    base = host_copy(model)
    held = [make_expert(model, i, rank, seed=seed) for i in range(experts)]
    _sync(device)
    return Resident(model, base, held, time.perf_counter() - start)


def _host_peak_kib() -> int:
    status = Path("/proc/self/status")
    if status.exists():
        found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
        if found:
            return int(found.group(1))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _reset_host_peak() -> bool:
    """Reset VmHWM (Linux ≥ 4.0: ``echo 5 > /proc/self/clear_refs``); False if impossible,
    and then the host peak is the process's whole lifetime's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_gib(device: torch.device, peak: bool) -> float | None:
    if device.type != "cuda":
        return None
    read = torch.cuda.max_memory_allocated if peak else torch.cuda.memory_allocated
    return read(device) / GIB


def _device_extra(device: torch.device) -> dict[str, float]:
    """What the cap binds (the allocator's reserved peak) and what the card sees in use
    (total − free: the CUDA context too, which the cap does not count)."""
    if device.type != "cuda":
        return {}
    free, total = torch.cuda.mem_get_info(device)
    return {"peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB,
            "device_used_gib": (total - free) / GIB}


def run_method(name: str, resident: Resident, *, count: int, warmup: int, seed: int,
               budget_s: float = float("inf")) -> dict[str, Any]:
    """Warm-up candidates, then ``count`` timed ones (fewer if they pass ``budget_s``
    seconds in all); ms per candidate and memory peaks."""
    device = resident.device
    method = get_method(name)
    genomes = candidates(name, warmup + count, len(resident.experts), seed)
    row: dict[str, Any] = {"method": name, "candidates": count, "warmup": warmup}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row["host_peak_reset"] = _reset_host_peak()
    seconds: list[float] = []
    try:
        for i, genome in enumerate(genomes):
            if sum(seconds) > budget_s:
                row["note"] = f"stopped at the {budget_s:g} s budget"
                break
            _sync(device)
            start = time.perf_counter()
            materialize(method, genome, resident.model, resident.base, resident.experts)
            _sync(device)
            if i >= warmup:
                seconds.append(time.perf_counter() - start)
    except torch.OutOfMemoryError as err:
        row["error"] = f"out of memory after {len(seconds)} timed candidates: {err}"[:400]
        torch.cuda.empty_cache()
    if seconds:
        row.update(ms_median=1e3 * statistics.median(seconds), ms_min=1e3 * min(seconds),
                   ms_max=1e3 * max(seconds), timed=len(seconds))
    row["peak_device_gib"] = _device_gib(device, peak=True)
    row.update(_device_extra(device))
    row["peak_host_rss_gib"] = _host_peak_kib() / 2**20
    row["last_genome"] = genomes[-1]
    return row


def cap_memory(device: torch.device, cap_gib: float) -> float | None:
    """Cap this process at ``cap_gib`` of the GPU (a 24 GB card's budget on a larger one)."""
    if device.type != "cuda" or cap_gib <= 0:
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, cap_gib * GIB / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def run(shape: LlamaShape, device: torch.device, *, rank: int = 16, experts: int = 3,
        count: int = 20, warmup: int = 2, seed: int = 0, cap_gib: float = 24.0,
        methods: tuple[str, ...] = METHODS, budget_s: float = float("inf")) -> dict[str, Any]:
    """Cap the GPU, set up, time every method's candidates; returns the report."""
    import transformers
    from transformers import LlamaForCausalLM  # noqa: F401  (imported before setup is timed)

    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(), "shape": asdict(shape), "rank": rank,
        "experts": experts, "memory_fraction": cap_memory(device, cap_gib),
        "memory_cap_gib": cap_gib if device.type == "cuda" and cap_gib > 0 else None}
    resident = setup(shape, device, rank=rank, experts=experts, seed=seed)
    params = list(resident.model.parameters())
    report.update(
        setup_s=resident.setup_s, params=sum(p.numel() for p in params),
        model_gib=sum(p.numel() * p.element_size() for p in params) / GIB,
        experts_gib=sum(e.nbytes for e in resident.experts) / GIB,
        after_setup_device_gib=_device_gib(device, peak=False),
        setup_peak_device_gib=_device_gib(device, peak=True),
        after_setup_host_rss_gib=_host_peak_kib() / 2**20)
    report["methods"] = [run_method(m, resident, count=count, warmup=warmup,
                                    seed=seed + 1 + i, budget_s=budget_s)
                         for i, m in enumerate(methods)]
    return report


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table (one row per method) with the setup above it."""
    shape = report["shape"]
    cap = report["memory_cap_gib"]
    lines = [
        f"{report['device']}; torch {report['torch']}, transformers {report['transformers']}, "
        f"{report['threads']} CPU threads; cap {'none' if cap is None else f'{cap:g} GiB'}.",
        f"Llama hidden {shape['hidden']}, {shape['layers']} layers, MLP {shape['intermediate']}, "
        f"{shape['heads']} heads, vocab {shape['vocab']}: {report['params'] / 1e6:,.1f}M "
        f"parameters, {report['model_gib']:.2f} GiB in bf16; {report['experts']} experts at "
        f"rank {report['rank']}: {report['experts_gib']:.3f} GiB of factors. Setup "
        f"{report['setup_s']:.1f} s; after it: device {_fmt(report['after_setup_device_gib'])} "
        f"GiB, host peak RSS {report['after_setup_host_rss_gib']:.2f} GiB.",
        "",
        "| method | timed candidates | ms/candidate median (min–max) | peak device GiB "
        "(max_memory_allocated) | reserved / card in use GiB | peak host RSS GiB | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["methods"]:
        timing = (f"{row['ms_median']:.1f} ({row['ms_min']:.1f}–{row['ms_max']:.1f})"
                  if "ms_median" in row else "–")
        note = row.get("error") or row.get("note") or (
            "" if row["host_peak_reset"] else "host peak: whole process")
        used = (f"{_fmt(row.get('peak_reserved_gib'))} / {_fmt(row.get('device_used_gib'))}"
                if "device_used_gib" in row else "–")
        lines.append(f"| {row['method']} | {row.get('timed', 0)} (+{row['warmup']} warm-up) | "
                     f"{timing} | {_fmt(row['peak_device_gib'])} | {used} | "
                     f"{row['peak_host_rss_gib']:.2f} | {note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    default = LlamaShape()
    for flag in ("hidden", "layers", "intermediate", "heads", "vocab"):
        parser.add_argument(f"--{flag}", type=int, default=getattr(default, flag))
    parser.add_argument("--kv-heads", type=int, help="default: --heads (no GQA, as Llama-2-7B)")
    parser.add_argument("--rank", type=int, default=16, help="rank of each expert's factors")
    parser.add_argument("--experts", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=20, help="timed, per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed candidates first")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--memory-cap-gib", type=float, default=24.0,
                        help="CUDA: set_per_process_memory_fraction to this (0: no cap)")
    parser.add_argument("--budget-s", type=float, default=150.0,
                        help="stop timing a method's candidates after this many seconds")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch sees no CUDA device; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = LlamaShape(args.hidden, args.layers, args.intermediate, args.heads,
                       args.kv_heads or args.heads, args.vocab)
    report = run(shape, device, rank=args.rank, experts=args.experts, count=args.candidates,
                 warmup=args.warmup, seed=args.seed, cap_gib=args.memory_cap_gib,
                 methods=tuple(args.methods), budget_s=args.budget_s)
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
