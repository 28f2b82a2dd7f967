"""Build the MiniLM zoo: item pools, probes, experts, the population's responses, the report.

``build_zoo(size)`` is deterministic from the recipe (``merge3.zoo.build_config``) and cached:
an up-to-date zoo is returned as is; otherwise everything is built into a temporary
sibling directory and swapped in when complete. Two worker processes (one torch thread
each) share the encoder work: base features, fine-tuning, merges.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from merge3.eval_logs import write_model_log
from merge3.zoo import build_jobs, cache, items
from merge3.zoo.build_config import ZooConfig, zoo_config
from merge3.zoo.encoder import POOLING, encode, load_encoder, load_tokenizer, text_fitter
from merge3.zoo.finetune import LinearProbe, fit_probe
from merge3.zoo.population import (
    Member,
    TaskResponses,
    TaskSlice,
    grid_members,
    random_members,
    score_features,
)
from merge3.zoo.report import compute_report, format_report
from merge3.zoo.tasks import TASKS, Splits, default_modules, make_splits, task_records

__all__ = ["build_zoo", "zoo_dir_for"]


def zoo_dir_for(size: str, out: str | Path | None = None) -> Path:
    return Path(out) if out is not None else cache.default_zoo_dir(size)


def build_zoo(size: str = "demo", out: str | Path | None = None, *, force: bool = False,
              progress: bool = True, workers_count: int | None = None) -> Path:
    """Build (or reuse) the zoo of ``size`` in ``out`` (default: the cache); returns its dir."""
    config = zoo_config(size)
    target = zoo_dir_for(size, out)
    recipe = config.recipe()
    if not force and cache.is_current(target, recipe):
        if progress:
            print(f"zoo {size}: up to date in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = cache.fresh_work_dir(target)
    try:
        timings = _Builder(config, work, progress, workers_count or config.workers).run()
        cache.write_recipe(work, recipe, timings=timings)
        return cache.publish(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _save_heads(model_dir: Path, heads: dict[str, LinearProbe]) -> None:
    from merge3.zoo.tiny import save_head

    for task, head in heads.items():
        save_head(model_dir / "heads" / f"{task}.safetensors", head.weight, head.bias, task,
                  TASKS[task].labels, pooling=POOLING)


class _Builder:
    """One build: holds the splits, features, heads and members between phases."""

    def __init__(self, config: ZooConfig, work: Path, progress: bool, n_workers: int) -> None:
        self.config = config
        self.work = work
        self.progress = progress
        self.n_workers = n_workers
        self.timings: dict[str, float] = {}
        self.worker_cpu: dict[str, float] = {}
        self.tokenizer = load_tokenizer()
        self.splits: dict[str, Splits] = {}
        self.slices: dict[str, list[TaskSlice]] = {}

    def _bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, disable=not self.progress, leave=True)

    def _time(self, phase: str, start: float) -> None:
        self.timings[phase] = round(time.perf_counter() - start, 1)

    def _cpu(self, phase: str, result: dict[str, Any]) -> dict[str, Any]:
        """Add a worker job's CPU seconds to ``phase`` (idle-machine time = CPU / workers)."""
        self.worker_cpu[phase] = round(self.worker_cpu.get(phase, 0.0) + result["cpu"], 1)
        return result

    def run(self) -> dict[str, float]:
        total = time.perf_counter()
        self.build_items()
        eval_batches = self.eval_batches()
        context = multiprocessing.get_context("spawn")
        start = time.perf_counter()
        with ProcessPoolExecutor(self.n_workers, mp_context=context,
                                 initializer=build_jobs.init_worker,
                                 initargs=(eval_batches,)) as pool:
            self._time("start workers", start)
            base_heads, base_eval = self.probes(pool)
            expert_results = self.finetune(pool, base_heads)
            self.population(pool, base_heads, base_eval, expert_results)
        start = time.perf_counter()
        report = compute_report(self.work)
        (self.work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.work / "report.md").write_text(format_report(report))
        self._time("report", start)
        self.timings["total"] = round(time.perf_counter() - total, 1)
        self.timings["parent cpu"] = round(time.process_time(), 1)
        for phase, seconds in self.worker_cpu.items():
            self.timings[f"worker cpu: {phase}"] = seconds
        return self.timings

    # -- phase 1: item pools ---------------------------------------------------------
    def build_items(self) -> None:
        start = time.perf_counter()
        cfg = self.config
        fit = text_fitter(self.tokenizer)
        modules = default_modules(cfg.size)
        for name in tqdm(cfg.tasks, desc="item pools", disable=not self.progress):
            task = TASKS[name]
            splits = make_splits(task, task_records(name, modules), n_train=cfg.n_train,
                                 n_validation=cfg.n_validation, n_test=cfg.n_test,
                                 n_test_extra=max(0, cfg.n_test_for(name) - cfg.n_test),
                                 seed=cfg.seed, fit=fit)
            items.save_item_pool(self.work, task, splits, self.tokenizer)
            self.splits[name] = splits
        self._time("item pools", start)

    def eval_batches(self) -> dict[str, Any]:
        """Validation and test items of every task, concatenated (one encoder pass each)."""
        out = {}
        for split in ("validation", "test"):
            texts: list[str] = []
            slices = []
            for name in self.config.tasks:
                examples = getattr(self.splits[name], split)
                slices.append(TaskSlice(name, len(texts), len(texts) + len(examples),
                                        tuple(e.item_id for e in examples),
                                        tuple(e.label for e in examples)))
                texts += [e.text for e in examples]
            self.slices[split] = slices
            out[split] = encode(self.tokenizer, texts)
        return out

    # -- phase 2: probes on the frozen base ------------------------------------------
    def probes(self, pool: ProcessPoolExecutor,
               ) -> tuple[dict[str, LinearProbe], dict[str, torch.Tensor]]:
        start = time.perf_counter()
        jobs: dict[str, Future] = {
            name: pool.submit(build_jobs.features_job,
                              encode(self.tokenizer, [e.text for e in self.splits[name].train]))
            for name in self.config.tasks
        }
        eval_job = pool.submit(build_jobs.features_job, None, ("validation", "test"))
        heads = {}
        with self._bar(len(jobs) + 1, "base features + probes") as bar:
            base_eval = self._cpu("base features", eval_job.result())
            bar.update()
            val_slices = {s.task: s for s in self.slices["validation"]}
            for name, job in jobs.items():
                train_feats = self._cpu("base features", job.result())["batches"]
                val = val_slices[name]
                heads[name], _ = fit_probe(
                    train_feats, [e.label for e in self.splits[name].train],
                    len(TASKS[name].labels),
                    val_features=base_eval["validation"][val.start: val.stop],
                    val_labels=list(val.labels))
                bar.update()
        base_dir = self.work / "models" / "base"
        load_encoder().save_pretrained(base_dir)
        self.tokenizer.save_pretrained(base_dir)
        _save_heads(base_dir, heads)
        self._time("base features + probes", start)
        return heads, base_eval

    # -- phase 3: experts ---------------------------------------------------------------
    def finetune(self, pool: ProcessPoolExecutor, probes: dict[str, LinearProbe]) -> dict[str, Any]:
        start = time.perf_counter()
        cfg = self.config
        jobs = {}
        for i, name in enumerate(cfg.tasks):
            train = self.splits[name].train
            ids = self.tokenizer([e.text for e in train], truncation=True)["input_ids"]
            ft = cfg.finetune_for(name, i)
            jobs[name] = pool.submit(
                build_jobs.finetune_job, name, ids, [e.label for e in train], probes[name], ft,
                cfg.snapshots, str(self.expert_dir(name)))
        results = {}
        with self._bar(len(jobs), "fine-tune experts") as bar:
            for name, job in jobs.items():
                results[name] = self._cpu("fine-tune", job.result())
                bar.update()
        expert_heads = {name: r["head"] for name, r in results.items()}
        for name in cfg.tasks:
            self.tokenizer.save_pretrained(self.expert_dir(name))
            _save_heads(self.expert_dir(name), expert_heads)
        self._time("fine-tune experts", start)
        return results

    def expert_dir(self, task: str) -> Path:
        return self.work / "models" / f"expert-{task}"

    # -- phase 4: the population --------------------------------------------------------
    def population(self, pool: ProcessPoolExecutor, probes: dict[str, LinearProbe],
                   base_eval: dict[str, torch.Tensor], experts: dict[str, Any]) -> None:
        start = time.perf_counter()
        cfg = self.config
        tasks = list(cfg.tasks)
        expert_heads = {name: r["head"] for name, r in experts.items()}
        expert_dirs = {name: str(self.expert_dir(name)) for name in tasks}
        grid = grid_members(tasks, cfg.grids)
        randoms = random_members(tasks, cfg.random_merges, cfg.seed)
        jobs = {m.name: pool.submit(build_jobs.merge_job, m.spec, expert_dirs,
                                    ("validation", "test") if m.method_label else ("test",))
                for m in grid + randoms}
        records: list[dict[str, Any]] = []
        self._record(records, Member("base", "base"), "models/base",
                     score_features(base_eval["test"], self.slices["test"], probes))
        for name, result in experts.items():
            model = f"expert-{name}"
            self._record(records, Member(model, "expert", info={"task": name}),
                         f"models/{model}",
                         score_features(result["test"], self.slices["test"], expert_heads))
            for step, snap in result["snapshots"].items():
                heads = {**expert_heads, name: snap["head"]}
                member = Member(f"{model}-step{step:03d}", "checkpoint",
                                info={"task": name, "step": step, "of": cfg.steps_for(name)})
                self._record(records, member, f"{model}@step{step}",
                             score_features(snap["test"], self.slices["test"], heads))
        with self._bar(len(jobs), "population merges") as bar:
            for member in grid + randoms:
                out = self._cpu("merges", jobs[member.name].result())
                if "validation" in out:
                    val = score_features(out["validation"], self.slices["validation"],
                                         expert_heads)
                    member.info["validation"] = {t: r.accuracy for t, r in val.items()}
                self._record(records, member, f"recipes/{member.name}.yaml",
                             score_features(out["test"], self.slices["test"], expert_heads))
                bar.update()
        population = {"format": "merge3-zoo-population-v1", "size": cfg.size, "tasks": tasks,
                      "members": records}
        (self.work / "population.json").write_text(json.dumps(population, indent=2) + "\n")
        self._time("population", start)

    def _record(self, records: list[dict[str, Any]], member: Member, model_path: str,
                responses: dict[str, TaskResponses]) -> None:
        summary = {task: {"metric": "acc", "score": r.accuracy, "n": len(r.item_ids)}
                   for task, r in responses.items()}
        write_model_log(self.work / "responses", member.name, model_path,
                        {task: r.log_rows() for task, r in responses.items()}, summary)
        entry: dict[str, Any] = {"name": member.name, "kind": member.kind,
                                 "model_path": model_path,
                                 "test": {t: r.accuracy for t, r in responses.items()}}
        if member.spec is not None:
            import yaml

            recipe = member.spec.recipe(self.config.size).model_dump(
                exclude_none=True, exclude_defaults=True)
            recipe = {"merge_method": member.spec.method, **recipe}
            path = self.work / model_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(recipe, sort_keys=False))
            entry["recipe"] = recipe
        if member.method_label:
            entry["method_label"] = member.method_label
            entry["coefficient"] = member.coefficient
        validation = member.info.pop("validation", None)
        if validation is not None:
            entry["validation"] = validation
        entry.update(member.info)
        records.append(entry)
