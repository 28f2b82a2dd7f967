"""Ray worker actors: each holds a device, the base, the experts and an evaluator.

A :class:`CandidateWorker` loads everything once; per candidate it materialises the
merged weights in memory, swaps them into its resident evaluator (no reload) and
scores the requested items of every task. :class:`WorkerPool` keeps one actor per
device busy, retries a candidate whose worker failed on another worker (a crashed or
hung actor is replaced), and reports candidates that failed every attempt.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.config import EvaluationSpec, ExpertStorageSpec

if TYPE_CHECKING:
    from evaluators.protocol import Evaluator

__all__ = ["WorkerSpec", "CandidateWorker", "WorkerPool", "CandidateResult", "init_ray",
           "default_worker_count", "expert_heads"]


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker loads: resolved model directories, task files, and the config's
    ``evaluation`` section (backend and its options)."""

    base_model: str  # the model the evaluator is built on (the base, else the first expert)
    experts: dict[str, str]  # expert name -> model dir (recipe order)
    tasks: dict[str, str]  # task name -> task YAML
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    threads: int = 1
    fault: Mapping[str, Any] | None = None
    expert_storage: ExpertStorageSpec | None = None  # None: the experts' files

    def make_evaluator(self) -> Evaluator:
        """The resident evaluator: the backend registry's entry for
        ``evaluation.backend`` (a name, or ``module:factory``) built on the base model."""
        from evaluators.backends import make_evaluator

        options = self.evaluation.evaluator_options()
        if self.expert_heads():
            options["heads_from"] = self.expert_heads()
        return make_evaluator(self.evaluation.backend, self.base_model, **options)

    def expert_heads(self) -> dict[str, str]:
        """See :func:`expert_heads`."""
        return expert_heads(self.experts, self.tasks)


def expert_heads(experts: Mapping[str, str], tasks: Iterable[str]) -> dict[str, str]:
    """Task -> expert directory, for each task that has an expert of its name with a head
    for it (``EXPERT/heads/<task>.safetensors``): an encoder candidate is scored on task T
    with expert T's head, as the item banks' populations were (docs/formats.md); other
    tasks use the base's ``heads/``. ``merge3 export`` writes the same heads."""
    tasks = set(tasks)
    return {task: path for task, path in experts.items() if task in tasks
            and (Path(path) / "heads" / f"{task}.safetensors").is_file()}


@dataclass
class CandidateResult:
    """What a candidate evaluation returns (responses: task -> item id -> score)."""

    key: Any
    responses: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    materialize_seconds: float = 0.0
    worker: str = ""
    attempts: int = 1
    error: str | None = None
    failures: list[str] = field(default_factory=list)  # errors of earlier attempts

    @property
    def items_evaluated(self) -> int:
        return sum(len(v) for v in self.responses.values())


class CandidateWorker:
    """The body of a worker actor (plain class: also usable in-process)."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from evaluators.tasks import load_task
        from merge3.checkpoints import Checkpoint
        from search.materialize import Materializer, expert_sources

        torch.set_num_threads(max(1, spec.threads))
        self.spec = spec
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        try:
            import ray

            if ray.is_initialized():  # inside an actor: name the Ray node too
                self.name += f"@{ray.get_runtime_context().get_node_id()[:12]}"
        except ImportError:
            pass
        base = Checkpoint(spec.base_model)
        # base and experts stay in their files (own dtype, read tensor by tensor as merged)
        # or held as low-rank task vectors (config expert_storage: lowrank)
        self.materializer = Materializer(
            base, expert_sources(base, list(spec.experts.values()), spec.expert_storage),
            num_layers=base.num_layers(),
        )
        self.evaluator = spec.make_evaluator()
        device = getattr(self.evaluator, "device", None)
        if device is not None and str(device).startswith("cuda"):
            self.materializer.device = device  # merge where the resident model lives
        self.items = {}
        for task, path in spec.tasks.items():
            loaded = load_task(path)
            self.items[task] = {item.id: item for item in loaded.items}
        self._faults = None
        if spec.fault:
            from search.faults import FaultInjector

            self._faults = FaultInjector(spec.fault)

    def info(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context() if ray.is_initialized() else None
        return {"worker": self.name, "node": context.get_node_id() if context else None}

    def evaluate(self, key: Any, recipe: Mapping[str, Any],
                 items: Mapping[str, Iterable[str] | None], attempt: int = 1) -> CandidateResult:
        """Materialise ``recipe`` and score ``items`` (task -> item ids; None: all items)."""
        if self._faults is not None:
            self._faults.maybe_fail(key, attempt)
        start = time.perf_counter()
        signature = json.dumps(recipe, sort_keys=True, default=str)
        if signature != getattr(self, "_loaded", None):  # a follow-up keeps the weights
            self._loaded = None
            # streamed into the resident model: one tensor's working set, never a model copy
            self.evaluator.load_weights(
                self.materializer.stream(recipe, seed=int(recipe.get("seed", 0))))
            self._loaded = signature
        materialized = time.perf_counter()
        responses: dict[str, dict[str, float]] = {}
        for task, ids in items.items():
            pool = self.items[task]
            chosen = list(pool.values()) if ids is None else [pool[i] for i in ids]
            results = self.evaluator.evaluate(chosen)
            responses[task] = {item.id: float(r.score) for item, r in zip(chosen, results)}
        return CandidateResult(key, responses, time.perf_counter() - start,
                               materialized - start, self.name, attempt)


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Join ``address`` or start a local Ray kept on 127.0.0.1; True if we started it."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return False
    # address="local": always a new local Ray, never a cluster some other run left behind
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", configure_logging=False)
    return True


class WorkerPool:
    """A pool of Ray actors evaluating candidates with retries and timeouts."""

    def __init__(self, spec: WorkerSpec, *, count: int, cpus: float = 1.0,
                 gpus: float = 0.0, timeout: float = 600.0, retries: int = 1,
                 max_restarts: int = 0) -> None:
        import ray

        self._ray = ray
        self.spec = spec
        self.timeout = timeout
        self.retries = retries
        # SPREAD: one actor per node where possible, so losing a node loses few workers
        self._actor_cls = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=max_restarts,
                                     scheduling_strategy="SPREAD")(CandidateWorker)
        self.actors = [self._new_actor() for _ in range(count)]
        # fail fast if a worker cannot load its models
        ray.get([a.info.remote() for a in self.actors])

    def _new_actor(self):
        return self._actor_cls.remote(self.spec)

    def run(
        self,
        jobs: list[tuple[Any, Mapping[str, Any], Mapping[str, Any]]],
        on_result: Callable[[CandidateResult], list | None],
    ) -> None:
        """Evaluate ``(key, recipe, items)`` jobs; ``on_result`` gets each result or failure
        (``result.error`` set) as soon as it is final, and may return follow-up jobs (e.g.
        more items for a close call), which are queued first."""
        ray = self._ray
        pending = [(job, 1, None) for job in jobs]  # (job, attempt, actor index to avoid)
        failures: dict[Any, list[str]] = {}
        idle = list(range(len(self.actors)))
        running: dict[Any, tuple[int, tuple, int, float]] = {}
        while pending or running:
            while pending and idle:
                job, attempt, avoid = pending.pop(0)
                choices = [i for i in idle if i != avoid] or idle
                index = choices[0]
                idle.remove(index)
                ref = self.actors[index].evaluate.remote(job[0], job[1], job[2], attempt)
                running[ref] = (index, job, attempt, time.monotonic())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            now = time.monotonic()
            finished = list(ready) + [r for r, (_, _, _, t0) in running.items()
                                      if r not in ready and now - t0 > self.timeout]
            for ref in finished:
                index, job, attempt, started = running.pop(ref)
                error, replace = None, ref not in ready  # a hung actor is replaced
                try:
                    if ref in ready:
                        result = ray.get(ref)
                    else:
                        error = f"timed out after {self.timeout:.0f} s"
                except (ray.exceptions.RayActorError, ray.exceptions.NodeDiedError) as err:
                    error, replace = f"worker died: {type(err).__name__}", True
                except ray.exceptions.RayTaskError as err:  # the candidate raised
                    cause = err.cause if err.cause is not None else err
                    error = f"{type(cause).__name__}: {str(cause).splitlines()[0][:300]}"
                if error is None:
                    result.failures = failures.pop(job[0], [])
                    follow_ups = list(on_result(result) or [])
                    # follow-ups go first, to this actor: it holds the candidate's weights
                    idle.insert(0 if follow_ups else len(idle), index)
                    pending[:0] = [(more, 1, None) for more in follow_ups]
                    continue
                failures.setdefault(job[0], []).append(f"attempt {attempt}: {error}")
                if replace:
                    ray.kill(self.actors[index], no_restart=True)
                    self.actors[index] = self._new_actor()
                idle.append(index)
                if attempt <= self.retries:
                    pending.insert(0, (job, attempt + 1, index))
                else:
                    on_result(CandidateResult(job[0], worker=f"actor {index}", attempts=attempt,
                                              seconds=now - started, error=error,
                                              failures=failures.pop(job[0], [])))

    def shutdown(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor, no_restart=True)
        self.actors = []


def default_worker_count(gpus: float, cpus: float) -> int:
    """One worker per GPU when workers take GPUs, else one per ``cpus`` cores."""
    if gpus:
        import torch

        return max(1, torch.cuda.device_count())
    return max(1, int((os.cpu_count() or 1) // max(cpus, 1)))
