"""``kill -9`` of a real ``merge3 search`` process at chosen points, then ``--resume``.

The driver kills itself where ``MERGE3_FAULT_KILL_AT=STAGE:N`` says (search/faults.py):
while candidates are evaluated, while a candidate is being logged to MLflow, at a
generation boundary, or just after a generation was asked. The points are drawn from a
seeded RNG over the stages and counts each process can still reach, so a plan is
reproducible. Used by tests/search/test_resume.py and benchmarks/reliability/report.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from search.faults import KILL_ENV, KILL_STAGES


def driver(args: list[str], kill_at: str | None = None) -> subprocess.Popen:
    """Start ``merge3 ARGS`` as a process of its own (killed at ``kill_at`` if given)."""
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.Popen([sys.executable, "-m", "merge3.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Descendants:
    """Watch a process's descendants (its local Ray: GCS, raylet, agents, workers) while it
    runs, then how long they outlive it: ``lingered`` seconds after its death until the
    last one exited (None while any is alive ``patience`` seconds after)."""

    def __init__(self, process: subprocess.Popen, patience: float = 300.0) -> None:
        self.process, self.patience = process, patience
        self.seen: dict[int, str] = {}
        self.lingered: float | None = None
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _alive(self) -> list[int]:
        import psutil

        alive = []
        for pid in self.seen:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.Error:
                continue
        return alive

    def _watch(self) -> None:
        import psutil

        while self.process.poll() is None:
            try:
                for child in psutil.Process(self.process.pid).children(recursive=True):
                    self.seen.setdefault(child.pid, child.name())
            except psutil.Error:
                pass
            time.sleep(0.5)
        died = time.monotonic()
        while self._alive():
            if time.monotonic() - died > self.patience:
                return
            time.sleep(1.0)
        self.lingered = time.monotonic() - died


def load_trials(run_dir: Path, study: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    if not (run_dir / "optuna.db").exists():
        return []
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # killed before the study was created
        return []


Place = tuple[int, int]  # (generation, slot)


@dataclass(frozen=True)
class Placed:
    """A finished candidate as the sampler placed it: what a resumed search must
    reproduce in that place, whatever the trial's number."""

    state: str
    genome: tuple[tuple[str, float], ...]  # (gene, value), sorted by gene
    parents: tuple[Place, ...]  # the parents' places (trial numbers differ between runs)
    estimates: tuple[tuple[str, float], ...]  # (task, estimate), sorted by task


def placed(run_dir: Path, study: str) -> dict[Place, Placed]:
    """Every finished candidate of the search in ``run_dir`` by its (generation, slot);
    trials a kill cut short are left out. Two placements of one slot raise an error."""
    trials = [t for t in load_trials(run_dir, study)
              if t.state.name in ("COMPLETE", "FAIL") and not t.user_attrs.get("interrupted")]
    place_of = {t.number: (int(t.user_attrs["generation"]), int(t.user_attrs["slot"]))
                for t in trials}
    out: dict[Place, Placed] = {}
    for trial in trials:
        place = place_of[trial.number]
        if place in out:
            raise AssertionError(f"two finished trials hold {place} in {run_dir}")
        out[place] = Placed(
            trial.state.name, tuple(sorted(trial.params.items())),
            tuple(sorted(place_of[p] for p in trial.user_attrs.get("parents") or ())),
            tuple(sorted((trial.user_attrs.get("estimates") or {}).items())))
    return out


def front_places(candidates: dict[Place, Placed]) -> dict[Place, Placed]:
    """The Pareto front (estimates maximised) of :func:`placed`'s candidates."""
    import numpy as np

    from search.pareto import pareto_mask

    done = sorted(p for p, c in candidates.items() if c.state == "COMPLETE")
    if not done:
        return {}
    values = np.array([[v for _, v in candidates[p].estimates] for p in done])
    return {p: candidates[p] for p, keep in zip(done, pareto_mask(values)) if keep}


@dataclass
class Tally:
    """What a search directory holds: the study's trials and the MLflow candidate runs."""

    finished: int  # distinct finished evaluations: COMPLETE, or FAIL not cut by a kill
    complete: int
    interrupted: int  # in flight at a kill: marked FAIL on resume, asked again
    running: int  # left RUNNING (in flight at a kill not yet resumed)
    item_evaluations: int  # anchor items scored by the finished candidates
    runs_per_trial: dict[int, int] = field(default_factory=dict)  # MLflow runs per trial
    run_states: Counter = field(default_factory=Counter)  # MLflow candidate-run statuses
    reconciled: int = 0  # runs a kill left RUNNING, completed (or marked) on resume


def tally(run_dir: Path, study: str, experiment: str) -> Tally:
    from mlflow.tracking import MlflowClient

    trials = load_trials(run_dir, study)
    cut = {t.number for t in trials if t.user_attrs.get("interrupted")}
    done = [t for t in trials if t.state.name in ("COMPLETE", "FAIL") and t.number not in cut]
    out = Tally(
        finished=len(done),
        complete=sum(t.state.name == "COMPLETE" for t in trials),
        interrupted=len(cut),
        running=sum(t.state.name == "RUNNING" for t in trials),
        item_evaluations=sum(int(t.user_attrs.get("items_evaluated") or 0) for t in done),
    )
    if not (run_dir / "mlflow.db").exists():
        return out
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return out
    runs = client.search_runs([found.experiment_id], filter_string="tags.`merge3.trial` != ''",
                              max_results=50_000)
    out.runs_per_trial = dict(Counter(int(r.data.tags["merge3.trial"]) for r in runs))
    out.run_states = Counter(r.info.status for r in runs)
    out.reconciled = sum("merge3.reconciled" in r.data.tags for r in runs)
    return out


def pick_kill(rng: random.Random, *, finished: int, budget: int, population: int,
              stage: str | None = None, kills_after: int = 0) -> str:
    """A ``STAGE:N`` that a driver resuming with ``finished`` candidates done will reach
    (``stage`` given: only N is drawn). With ``kills_after`` more kills to come, the point
    finishes at most a fair share of the remaining candidates, so they can happen."""
    remaining = budget - finished
    # generations left to finish (one cut short by a kill counts): the driver's iterations
    generations = -(-budget // population) - finished // population
    reachable = {"ask": generations, "evaluate": remaining, "log": remaining,
                 "generation": generations}
    if kills_after:
        # candidates finished before the kill: ask N -> < (N-1) * population,
        # evaluate N -> N-1, log N -> N, generation N -> <= N * population
        share = max(1, remaining // (kills_after + 1))
        caps = {"ask": share // population + 1, "evaluate": share + 1, "log": share,
                "generation": share // population}
        reachable = {s: min(n, max(1, caps[s])) for s, n in reachable.items()}
    if stage is None:
        stage = rng.choice([s for s in KILL_STAGES if reachable[s] >= 1])
    return f"{stage}:{rng.randint(1, reachable[stage])}"


@dataclass
class Kill:
    point: str  # STAGE:N
    killed: bool  # the process died of SIGKILL
    finished_before: int
    finished_after: int
    seconds: float = 0.0  # from the driver's start to its death
    output: str = ""
    descendants: Descendants | None = None  # with watch=True


def kill_and_resume(args: list[str], run_dir: Path, *, study: str, budget: int,
                    population: int, stages: list[str | None], seed: int,
                    timeout: float = 600,
                    watch: bool = False) -> tuple[list[Kill], subprocess.CompletedProcess]:
    """Run ``merge3 search ARGS`` and kill it once per entry of ``stages`` (a stage, or
    None for a random one) at a seeded random count, resuming after each; then resume to
    the end. The kills and the last run's result (``watch``: each killed driver's
    descendants are watched, see :class:`Descendants`)."""
    rng = random.Random(seed)
    done: list[Kill] = []
    for number, stage in enumerate(stages):
        before = tally(run_dir, study, study).finished if number else 0
        if before >= budget:  # the last kill came after the last candidate
            break
        point = pick_kill(rng, finished=before, budget=budget, population=population,
                          stage=stage, kills_after=len(stages) - number - 1)
        started = time.monotonic()
        process = driver([*args, *(["--resume"] if number else [])], kill_at=point)
        descendants = Descendants(process) if watch else None
        output, _ = process.communicate(timeout=timeout)
        done.append(Kill(point, process.returncode == -signal.SIGKILL, before,
                         tally(run_dir, study, study).finished, time.monotonic() - started,
                         output, descendants))
        if not done[-1].killed:
            break
    process = driver([*args, "--resume"])
    output, _ = process.communicate(timeout=timeout)
    return done, subprocess.CompletedProcess(process.args, process.returncode, output)
