"""``merge3 plan``: a search worker's predicted peak host and device memory and seconds per
candidate, from the checkpoints' headers (no tensor is read) or a synthetic Llama size.

What a worker holds (search/workers.py): the process (Python, torch, transformers; a Ray
actor), the resident evaluator's weights in ``evaluation.dtype`` on its device, the
experts in their ``expert_storage`` (``files``: nothing in the process, their pages in the
OS cache; ``lowrank``: the rank-r factors), and one candidate's working set while it is
streamed in: a multiple of the largest tensor × the merge's inputs × 4 bytes (float32
arithmetic), the multiple per method family. Evaluation adds its activations (the
log-softmax of a batch) on the evaluator's device; vLLM claims ``gpu_memory_utilization``
of the GPU for weights and KV cache.

Which numbers are measured and which are modelled is kept in :data:`MEASURED` and
:data:`MODELLED` and printed with the plan (benchmarks/scale/plan.md has the measurements
and the 15% check against a worker's measured peak RSS).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from merge3.errors import RecipeError

__all__ = ["ModelShape", "WorkerPlan", "Machine", "plan_worker", "parse_memory",
           "LLAMA_SIZES", "check_plan", "format_plan", "this_machine"]

GIB = 2**30
# Measured with benchmarks/scale/measure_worker.py on the 258.5M bf16 Llama (plan.md):
MEASURED = {
    # RssAnon of a worker process with torch + transformers and an evaluator, less its weights
    "process_bytes": 0.33 * GIB,
    # a candidate's peak extra RssAnon ÷ (largest tensor × inputs × 4 B), streamed on CPU
    "working_set": {"linear": 1.2, "sparse": 4.7},
    # bytes read + written per second while a candidate streams into the evaluator, 2 cores:
    # task arithmetic 2.07 GB in 2.2 s alone; TIES in 172 s (a loaded machine; plan.md)
    "bandwidth": {"linear": 0.94e9, "sparse": 0.012e9},
    # low-rank setup: peak extra RssAnon ÷ (largest 2-D tensor × 4 B) while the SVDs run
    "svd_transient": 6.0,
    # float32 matmul rate of the low-rank rebuild (U S) Vᵀ on this CPU, FLOP/s
    "rebuild_flops": 20e9,
}
MODELLED = {
    "cuda_context_bytes": 0.6 * GIB,  # CUDA context + allocator slack per process
    "ray_actor_bytes": 0.15 * GIB,  # a Ray actor's own runtime beside the worker's state
    "driver_bytes": 1.5 * GIB,  # driver, raylet, GCS, Optuna, MLflow on the head host
    "vllm_utilization": 0.9,  # vLLM's default gpu_memory_utilization
    "vllm_reserve_bytes": 1.0 * GIB,  # vLLM activations / CUDA graphs inside its share
    "eval_tokens": 256,  # tokens per scored sequence (HF scores batch × tokens × vocab)
    "gpu_bandwidth": 10e9,  # host → GPU bytes/s of a streamed candidate (PCIe, page cache)
    "gpu_flops": 20e12,  # float32 matmul FLOP/s of the low-rank rebuild on a GPU
}
SPARSE = ("ties", "dare", "breadcrumbs", "della", "pcb", "sce", "magmax", "consensus",
          "cart", "arcee_fusion", "ram", "tsv", "iso", "wudi")
DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2,
               "auto": 2}


def parse_memory(text: str | int | float, what: str) -> int:
    """``24GB``/``24GiB``/``24G`` -> bytes (GB means GiB here, as nvidia-smi and free say)."""
    if isinstance(text, (int, float)):
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT])?(i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise RecipeError(f"{what}: cannot read the size {text!r}.",
                          fix="write it like 24GB, 80GiB or 512MB.")
    number, prefix = float(match.group(1)), (match.group(2) or "").upper()
    return int(number * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[prefix])


@dataclass(frozen=True, slots=True)
class ModelShape:
    """A model's tensors as (shape, bytes per element), from headers or a synthetic size."""

    label: str
    tensors: tuple[tuple[tuple[int, ...], int], ...]

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> ModelShape:
        from merge3.checkpoints import Checkpoint

        checkpoint = Checkpoint(path)
        infos = [checkpoint.info(n) for n in checkpoint.names()]
        checkpoint.close()
        return cls(str(path), tuple((i.shape, i.nbytes // max(i.numel, 1)) for i in infos))

    @classmethod
    def llama(cls, size: str, dtype_bytes: int = 2) -> ModelShape:
        """A Llama of ``size`` (``LLAMA_SIZES``), untied head, in ``dtype_bytes``."""
        if size.upper() not in LLAMA_SIZES:
            raise RecipeError(f"--params {size!r} is not a known Llama size.",
                              fix=f"use one of: {', '.join(LLAMA_SIZES)}.")
        hidden, inter, layers, heads, kv, vocab = LLAMA_SIZES[size.upper()]
        kv_dim = hidden // heads * kv
        per_layer = [(hidden, hidden), (kv_dim, hidden), (kv_dim, hidden), (hidden, hidden),
                     (inter, hidden), (inter, hidden), (hidden, inter), (hidden,), (hidden,)]
        shapes = [(vocab, hidden)] + per_layer * layers + [(hidden,), (vocab, hidden)]
        return cls(f"synthetic Llama {size.upper()}", tuple((s, dtype_bytes) for s in shapes))

    @property
    def params(self) -> int:
        return sum(_numel(s) for s, _ in self.tensors)

    @property
    def nbytes(self) -> int:
        return sum(_numel(s) * b for s, b in self.tensors)

    @property
    def largest(self) -> int:
        return max(_numel(s) for s, _ in self.tensors)

    @property
    def largest_matrix(self) -> int:
        return max((_numel(s) for s, _ in self.tensors if len(s) == 2), default=0)

    @property
    def vocab(self) -> int:
        return max((s[0] for s, _ in self.tensors if len(s) == 2), default=0)

    def lowrank_bytes(self, rank: int, factor_bytes: int) -> int:
        from merge3.lowrank import lowrank_bytes

        return sum(lowrank_bytes(s, rank, factor_bytes) if len(s) == 2 and min(s) > 1
                   else _numel(s) * b for s, b in self.tensors)

    def rebuild_flops(self, rank: int) -> int:
        return sum(2 * s[0] * s[1] * min(rank, *s) for s, _ in self.tensors if len(s) == 2)


# hidden, intermediate, layers, heads, kv heads, vocab (Llama-2 7B/13B/70B, TinyLlama 1.1B)
LLAMA_SIZES = {"1.1B": (2048, 5632, 22, 32, 4, 32000), "7B": (4096, 11008, 32, 32, 32, 32000),
               "13B": (5120, 13824, 40, 40, 40, 32000), "70B": (8192, 28672, 80, 64, 8, 32000)}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def method_family(method: str) -> str:
    """``sparse`` (trim/sign/SVD kernels: the measured TIES multiple) or ``linear``."""
    name = method.removeprefix("svc_")
    return "sparse" if name.startswith(SPARSE) else "linear"


@dataclass(frozen=True)
class Machine:
    """What a worker runs on: GPU memory per device (None: no GPU) and host RAM."""

    gpu_bytes: int | None
    host_bytes: int
    label: str = "this machine"


def this_machine() -> Machine:
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_properties(0).total_memory
    except ImportError:
        pass
    return Machine(gpu, host)


@dataclass
class WorkerPlan:
    """Predicted bytes per worker (host and device lines) and seconds per candidate."""

    model: ModelShape
    experts: int
    storage: str
    host: dict[str, int] = field(default_factory=dict)
    device: dict[str, int] = field(default_factory=dict)
    page_cache: int = 0  # the files a host keeps cached for fast candidates (shared)
    setup_transient: int = 0
    materialize_seconds: float = 0.0
    workers: int = 1
    workers_per_gpu: float = 1.0
    problems: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    @property
    def host_peak(self) -> int:
        steady = sum(v for k, v in self.host.items() if not k.startswith("peak:"))
        peaks = [v for k, v in self.host.items() if k.startswith("peak:")]
        return steady + max([self.setup_transient, *peaks])

    @property
    def device_peak(self) -> int:
        steady = sum(v for k, v in self.device.items() if not k.startswith("peak:"))
        return steady + max([0, *(v for k, v in self.device.items() if k.startswith("peak:"))])

    @property
    def fits(self) -> bool:
        return not self.problems


def plan_worker(model: ModelShape, *, experts: int, method: str, eval_dtype: str,
                backend: str = "hf", device: str = "auto", batch_size: int = 64,
                storage: str = "files", rank: int | None = None,
                factor_dtype: str = "float32", workers: int = 1, gpus: float | None = None,
                machine: Machine, local: bool = True) -> WorkerPlan:
    """The plan of one worker of a search over ``model`` and ``experts`` experts."""
    plan = WorkerPlan(model, experts, storage if storage == "files" else f"lowrank r{rank}",
                      workers=workers)
    on_gpu = machine.gpu_bytes is not None and device != "cpu" and gpus != 0
    weights = model.params * DTYPE_BYTES.get(eval_dtype, 4)
    inputs = experts + 1
    family = method_family(method)
    working_set = int(MEASURED["working_set"][family] * model.largest * inputs * 4)
    activations = batch_size * MODELLED["eval_tokens"] * model.vocab * 4 * 2  # logits + lsm
    plan.host["process (python, torch, transformers)"] = int(MEASURED["process_bytes"])
    plan.host["ray actor runtime"] = int(MODELLED["ray_actor_bytes"])
    if storage == "files":
        plan.host["experts (files: in the page cache, not the process)"] = 0
        plan.page_cache = model.nbytes * inputs
    else:
        assert rank is not None
        plan.host[f"experts (low-rank r{rank}, {factor_dtype})"] = experts * model.lowrank_bytes(
            rank, DTYPE_BYTES[factor_dtype])
        plan.setup_transient = int(MEASURED["svd_transient"] * model.largest_matrix * 4)
        plan.page_cache = model.nbytes  # only the base is read per candidate
    merge_where = plan.device if on_gpu and backend != "vllm" else plan.host
    merge_where[f"peak: candidate working set ({method}, {inputs} inputs)"] = working_set
    if not on_gpu:
        plan.host[f"evaluator weights ({eval_dtype})"] = weights
        plan.host["peak: evaluation activations (modelled)"] = activations
    elif backend == "vllm":
        share = int(MODELLED["vllm_utilization"] * machine.gpu_bytes)
        plan.device[f"vLLM engine share ({MODELLED['vllm_utilization']:.0%} of the GPU)"] = share
        kv_cache = share - weights - int(MODELLED["vllm_reserve_bytes"])
        plan.device[f"  of which weights ({eval_dtype}) {weights / GIB:.1f} GiB, KV cache "
                    f"{kv_cache / GIB:.1f} GiB"] = 0
        plan.host["vLLM engine host side (modelled)"] = int(MEASURED["process_bytes"])
        if kv_cache <= 0:
            plan.problems.append(f"vLLM's share of the GPU ({share / GIB:.1f} GiB) cannot hold "
                                 f"the {eval_dtype} weights ({weights / GIB:.1f} GiB) and a KV "
                                 "cache")
    else:
        plan.device["CUDA context (modelled)"] = int(MODELLED["cuda_context_bytes"])
        plan.device[f"evaluator weights ({eval_dtype})"] = weights
        plan.device["peak: evaluation activations (modelled)"] = activations
    plan.workers_per_gpu = 1 / gpus if on_gpu and gpus and gpus < 1 else 1.0
    _seconds(plan, family, on_gpu and backend != "vllm", storage, rank)  # vLLM: merged on host
    _check(plan, machine, local=local, on_gpu=on_gpu, eval_dtype=eval_dtype)
    return plan


def _seconds(plan: WorkerPlan, family: str, on_gpu: bool, storage: str,
             rank: int | None) -> None:
    model, inputs = plan.model, plan.experts + 1
    read = model.nbytes * (inputs if storage == "files" else 1 + plan.experts)
    moved = read + model.nbytes  # read the inputs, write the candidate into the evaluator
    seconds = moved / MEASURED["bandwidth"][family]
    if on_gpu:
        seconds = moved / MODELLED["gpu_bandwidth"]
    if storage != "files" and rank is not None:
        rate = MODELLED["gpu_flops"] if on_gpu else MEASURED["rebuild_flops"]
        seconds += plan.experts * model.rebuild_flops(rank) / rate
    plan.materialize_seconds = seconds


def _check(plan: WorkerPlan, machine: Machine, *, local: bool, on_gpu: bool,
           eval_dtype: str) -> None:
    if on_gpu:
        per_gpu = plan.device_peak * plan.workers_per_gpu
        if per_gpu > machine.gpu_bytes:
            plan.problems.append(f"device: {per_gpu / GIB:.1f} GiB per GPU needed, "
                                 f"{machine.gpu_bytes / GIB:.1f} GiB there")
            if DTYPE_BYTES.get(eval_dtype, 4) == 4:
                plan.fixes.append("evaluation.dtype: bfloat16 (halves the resident weights)")
            if plan.workers_per_gpu > 1:
                plan.fixes.append("workers.gpus: 1 (one worker per GPU)")
            plan.fixes.append("a GPU with more memory, or a smaller model")
    if not local:
        return  # a cluster's hosts are not known here: each worker's line is what a node needs
    need = plan.workers * plan.host_peak + int(MODELLED["driver_bytes"]) + plan.page_cache
    if need > machine.host_bytes:
        plan.problems.append(
            f"host: {need / GIB:.1f} GiB needed ({plan.workers} worker(s) × "
            f"{plan.host_peak / GIB:.1f} + driver {MODELLED['driver_bytes'] / GIB:.1f} + "
            f"page cache of the models read per candidate {plan.page_cache / GIB:.1f}), "
            f"{machine.host_bytes / GIB:.1f} GiB there")
        if plan.storage == "files":
            plan.fixes.append("expert_storage: {kind: lowrank, rank: 16} (no expert files "
                              "read per candidate)")
        if plan.workers > 1:
            plan.fixes.append("fewer workers per host (workers.count), or more hosts")
        if not on_gpu:
            plan.fixes.append("evaluation on a GPU, or evaluation.dtype: bfloat16")


def format_plan(plan: WorkerPlan, machine: Machine) -> str:
    """The plan as the lines ``merge3 plan`` prints."""
    model = plan.model
    gpu = f"{machine.gpu_bytes / GIB:.0f} GiB GPU" if machine.gpu_bytes else "no GPU"
    lines = [f"model: {model.label}: {model.params / 1e9:.2f}B parameters, "
             f"{model.nbytes / GIB:.2f} GiB stored; largest tensor {model.largest / 1e6:.1f}M",
             f"machine: {machine.label}: {gpu}, host {machine.host_bytes / GIB:.0f} GiB; "
             f"{plan.workers} worker(s), {plan.experts} experts as {plan.storage}",
             "per worker, host (RssAnon):"]
    lines += [f"  {k.removeprefix('peak: '):58s} {v / GIB:7.2f} GiB" for k, v in plan.host.items()]
    if plan.setup_transient:
        lines.append(f"  {'low-rank setup (SVDs, once; peak with the line above)':58s} "
                     f"{plan.setup_transient / GIB:7.2f} GiB")
    lines.append(f"  {'predicted peak':58s} {plan.host_peak / GIB:7.2f} GiB")
    lines.append(f"  {'page cache wanted (files read per candidate, shared)':58s} "
                 f"{plan.page_cache / GIB:7.2f} GiB")
    if plan.device:
        lines.append("per worker, device:")
        lines += [f"  {k.removeprefix('peak: '):58s} {v / GIB:7.2f} GiB"
                  for k, v in plan.device.items() if v or k.startswith("  ")]
        lines.append(f"  {'predicted peak':58s} {plan.device_peak / GIB:7.2f} GiB")
    lines.append(f"materialisation per candidate: {plan.materialize_seconds:.1f} s predicted "
                 "(bytes moved / measured bandwidth; evaluation time: measure with merge3 eval)")
    lines.append("measured (benchmarks/scale): process, working-set multiples, CPU bandwidth, "
                 "SVD transient (on a CPU; a GPU's working set is taken to be the same); modelled: "
                 "CUDA context, Ray actor, driver, activations, vLLM, GPU bandwidth/FLOPS")
    if plan.fits:
        lines.append("fits: yes")
    else:
        lines.append("fits: NO — " + "; ".join(plan.problems))
        lines.append("fix: " + "; or ".join(dict.fromkeys(plan.fixes)))
    return "\n".join(lines)


def plan_config(config, machine: Machine, *, base_model: str | None = None,  # noqa: ANN001
                local: bool = True, model: ModelShape | None = None) -> WorkerPlan:
    """The plan of a ``SearchConfig`` (models resolved to directories, or ``model``)."""
    if model is None:
        model = ModelShape.from_checkpoint(base_model or config.base_model)
    workers = config.workers
    storage = config.expert_storage
    gpus = workers.gpus
    count = workers.count or (1 if machine.gpu_bytes else max(1, int(
        (os.cpu_count() or 1) // max(workers.cpus, 1))))
    evaluation = config.evaluation
    return plan_worker(model, experts=len(config.experts), method=config.method,
                       eval_dtype=evaluation.dtype, backend=evaluation.backend,
                       device=evaluation.device, batch_size=evaluation.batch_size,
                       storage=storage.kind, rank=storage.rank, factor_dtype=storage.dtype,
                       workers=count, gpus=gpus, machine=machine, local=local)


def check_plan(config, base_model: str, *, local: bool = True) -> WorkerPlan:  # noqa: ANN001
    """Refuse a search whose workers cannot fit this machine (``merge3 search`` runs it
    after the config is checked; ``--no-plan-check`` skips it)."""
    machine = this_machine()
    plan = plan_config(config, machine, base_model=base_model, local=local)
    if not plan.fits:
        raise RecipeError(
            f"merge3 plan: this search does not fit {machine.label}: "
            + "; ".join(plan.problems) + ".",
            fix="; or ".join(dict.fromkeys(plan.fixes)) + " (see `merge3 plan CONFIG`; "
                "--no-plan-check runs it anyway).")
    return plan


def resolve_base(config) -> str:  # noqa: ANN001
    """The model directory the evaluator is built on (as search.prepare resolves it)."""
    from merge3.models import resolve_model

    reference = config.base_model or next(iter(config.experts.values()))
    return str(resolve_model(reference))
