"""Regenerate benchmarks/reliability/README.md: every fault and every bad input, run for real.

    .venv/bin/python benchmarks/reliability/report.py            # ~30-40 min on 2 cores
    .venv/bin/python benchmarks/reliability/report.py --kills-only   # ~10 min: that section

- Driver kills: a real `merge3 search` process (its own local Ray, as a user runs it) is
  killed with SIGKILL at seeded random points (search/testing/kills.py:
  ``MERGE3_FAULT_KILL_AT``), resumed after each kill, and compared with the same search
  run once without a kill: finished evaluations, item evaluations, MLflow runs, the
  candidate in every (generation, slot) — genome, parents, estimates — and the front, and
  how long the killed driver's processes outlived it. ``--kills-only`` reruns just this
  and replaces its section of the README.
- Faults, safe defaults and fuzzing: the pytest tests listed below, run in one pytest
  process (fuzzing with ``MERGE3_FUZZ_EXAMPLES`` examples per reader); their outcome and
  duration go in the tables.
- Bad inputs (search/testing/cases.py) are run through `merge3`'s main, recording the
  exit code, the one-line message and whether any output was left behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FAULT_TESTS = {
    "tests/search/test_resume.py::test_kill_9_then_resume_loses_nothing":
        "driver killed (kill -9 from outside) mid-search, then --resume",
    "tests/search/test_resume.py::test_killed_at_random_points_resume_matches_an_uninterrupted_run":
        "driver killed 3x (during evaluation, MLflow logging, at a generation boundary; "
        "seeded), resumed after each; compared with an uninterrupted run",
    "tests/search/test_search.py::test_search_completes_despite_failing_candidates":
        "worker raises on a candidate (twice: recorded failed; once: retried)",
    "tests/search/test_search.py::test_a_worker_process_that_dies_is_replaced":
        "worker process exits mid-candidate",
    "tests/reliability/test_faults.py::test_a_hung_worker_is_replaced_and_its_candidate_retried":
        "worker hangs past the timeout",
    "tests/reliability/test_faults.py::test_losing_a_node_mid_search":
        "worker node of a two-node Ray cluster killed mid-search",
    "tests/reliability/test_faults.py::test_tracking_server_down_then_back":
        "MLflow server killed mid-search, restarted later",
    "tests/reliability/test_faults.py::test_tracking_server_never_back_fails_loudly_and_keeps_the_study":
        "MLflow server unreachable for the whole search",
}

SAFE_DEFAULT_TESTS = {
    "tests/reliability/test_bad_input.py::test_bad_input_is_refused_clearly"
    "[pickle weights without opt-in]":
        "pickle weights refused without --allow-pickle",
    "tests/reliability/test_safe_defaults.py::test_pickle_opt_in_merges_the_same_as_safetensors":
        "with --allow-pickle, pickle weights merge exactly as the safetensors copy",
    "tests/reliability/test_safe_defaults.py::test_model_code_refused_without_the_flag":
        "a model whose config asks for its own code (auto_map) is refused; its code never runs",
    "tests/reliability/test_safe_defaults.py::test_search_refuses_a_base_with_model_code":
        "the same in a search config (before the run directory exists)",
    "tests/reliability/test_safe_defaults.py::test_the_flag_reaches_transformers":
        "with --trust-remote-code (evaluation.trust_remote_code) the model's code runs",
    "tests/reliability/test_safe_defaults.py::test_no_load_runs_model_code_or_unpickles_by_default":
        "static: every Auto*.from_pretrained / vLLM LLM passes trust_remote_code, never True; "
        "torch.load weights_only; no pickle",
    "tests/reliability/test_safe_defaults.py::test_local_ray_binds_only_loopback":
        "the local Ray merge3 starts: node on 127.0.0.1, every listening socket loopback",
    "tests/reliability/test_safe_defaults.py::test_server_commands_bind_loopback":
        "no other server started; printed MLflow UI commands use --host 127.0.0.1",
    "tests/reliability/test_safe_defaults.py::test_tracking_uri_credentials_and_env_secrets_stay_out_of_mlflow":
        "http://user:password@ tracking URI and a secret env var: in no artifact, param, "
        "tag or printed line",
    "tests/search/test_search.py::test_no_machine_paths_or_secrets_in_mlflow":
        "no absolute paths and no secret-named env var values in MLflow",
}

FUZZ_TESTS = {
    "tests/reliability/test_fuzz.py::test_fuzzed_long_tables": "response tables (CSV)",
    "tests/reliability/test_fuzz.py::test_fuzzed_lm_eval_samples": "lm-eval samples (JSONL)",
    "tests/reliability/test_fuzz.py::test_fuzzed_recipes": "recipes (YAML text, raw bytes)",
    "tests/reliability/test_fuzz.py::test_fuzzed_search_configs": "search configs (YAML, bytes)",
    "tests/reliability/test_fuzz.py::test_fuzzed_item_banks": "item banks (bank.json, params.npz)",
}
FUZZ_EXAMPLES = 500

KILL_SEEDS = (1, 2, 4, 5)  # a kill sequence per seed: every stage once, seeded order; seed 3
# draws the same plan as seed 1 (small ranges), so it is left out
KILL_POPULATION, KILL_GENERATIONS = 4, 3


def run_bad_inputs(root: Path, ctx: dict,
                   scratch: Path) -> list[tuple[str, str, int, str, bool, bool]]:
    """Every case under ``root``; paths under ``scratch`` are shortened to … in messages."""
    from merge3.cli import main
    from search.testing.cases import CASES

    rows = []
    for number, case in enumerate(CASES):
        tmp = root / f"case{number}"
        tmp.mkdir()
        argv, output, pattern = case.build(tmp, ctx)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        line = next((x for x in err.getvalue().splitlines()
                     if x.startswith("merge3: error:")), err.getvalue().strip())
        clean = output is None or not output.exists()
        named = bool(re.search(pattern, line)) and "Fix:" in line
        message = line.replace(str(scratch), "…").removeprefix("merge3: error: ")
        rows.append((case.area, case.name, code, message, clean, named))
    return rows


def run_kills(root: Path, setting: dict) -> tuple[dict, list[dict]]:
    """The uninterrupted reference and one kill sequence per seed, each a real process."""
    import yaml

    from search.faults import KILL_STAGES
    from search.testing.kills import driver, kill_and_resume, placed, tally
    from search.testing.setting import search_config

    budget = KILL_POPULATION * KILL_GENERATIONS
    config = search_config(setting, name="kills", strategy={
        "population": KILL_POPULATION, "generations": KILL_GENERATIONS, "seed": 0})
    config_path = root / "kills.yaml"
    config_path.write_text(yaml.safe_dump(config))

    def args(run_dir: Path) -> list[str]:
        return ["search", str(config_path), "--run-dir", str(run_dir), "-q"]

    started = time.monotonic()
    process = driver(args(root / "uninterrupted"))
    output, _ = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise RuntimeError(f"the uninterrupted search failed:\n{output[-3000:]}")
    reference = {"tally": tally(root / "uninterrupted", "kills", "kills"),
                 "placed": placed(root / "uninterrupted", "kills"),
                 "seconds": time.monotonic() - started}
    sequences = []
    for seed in KILL_SEEDS:
        run_dir = root / f"killed_seed{seed}"
        started = time.monotonic()
        kills, final = kill_and_resume(args(run_dir), run_dir, study="kills", budget=budget,
                                       population=KILL_POPULATION,
                                       stages=random.Random(seed).sample(
                                           KILL_STAGES, len(KILL_STAGES)), seed=seed,
                                       timeout=1800, watch=True)
        seconds = time.monotonic() - started
        for kill in kills:  # the killed drivers' processes: wait until they are gone
            kill.descendants.thread.join(timeout=kill.descendants.patience + 30)
        sequences.append({"seed": seed, "kills": kills, "returncode": final.returncode,
                          "output": final.stdout, "tally": tally(run_dir, "kills", "kills"),
                          "placed": placed(run_dir, "kills"), "seconds": seconds,
                          "fronts": len(list(run_dir.glob("fronts/front_gen*.md")))})
    return reference, sequences


def run_tests(tests: dict[str, str]) -> dict[str, tuple[str, float]]:
    """Run ``tests`` in one pytest process; {test id: (status, seconds)}."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        env = {**os.environ, "MERGE3_FUZZ_EXAMPLES": str(FUZZ_EXAMPLES)}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={report}", *tests], cwd=ROOT, env=env, check=False)
        results = {}
        for case in ET.parse(report).getroot().iter("testcase"):
            path = case.get("classname", "").replace(".", "/") + ".py"
            status = "passed"
            if case.find("failure") is not None or case.find("error") is not None:
                status = "FAILED"
            elif case.find("skipped") is not None:
                status = "skipped"
            results[f"{path}::{case.get('name')}"] = (status, float(case.get("time", 0)))
    return {test: results.get(test, ("not run", 0.0)) for test in tests}


def _same_search(reference: dict, seq: dict) -> str:
    """Whether a resumed search holds the uninterrupted one's candidates, place by place."""
    from search.testing.kills import front_places

    want, got = reference["placed"], seq["placed"]
    differ = sorted(p for p in set(want) | set(got) if want.get(p) != got.get(p))
    front = front_places(got) == front_places(want)
    if not differ and front:
        return f"{len(got)}/{len(want)} same; front same ({len(front_places(got))})"
    return (f"**{len(want) - len(differ)}/{len(want)} same**, differ at "
            f"{', '.join(f'g{g}s{s}' for g, s in differ)}; front "
            f"{'same' if front else '**differs**'}")


def _kill_rows(reference: dict, sequences: list[dict]) -> list[str]:
    want = reference["tally"]
    rows = [f"| uninterrupted | — | {want.finished} | {want.item_evaluations} | "
            f"{want.interrupted} | — | {_runs(want)} | — | {reference['seconds']:.0f} |"]
    for seq in sequences:
        got = seq["tally"]
        points = "<br>".join(
            f"`{k.point}`: {k.finished_before} → {k.finished_after} finished"
            + ("" if k.killed else " (NOT KILLED)") for k in seq["kills"])
        lingered = [k.descendants.lingered for k in seq["kills"]]
        gone = ("never (still alive)" if any(v is None for v in lingered)
                else f"≤ {max(lingered):.0f} s")
        same = _same_search(reference, seq)
        ok = (seq["returncode"] == 0 and got.finished == want.finished
              and got.item_evaluations == want.item_evaluations and got.running == 0
              and set(got.runs_per_trial.values()) <= {1}
              and set(got.run_states) <= {"FINISHED", "FAILED"}
              and seq["fronts"] == KILL_GENERATIONS and "**" not in same)
        rows.append(f"| seed {seq['seed']}{'' if ok else ' **MISMATCH**'} | {points} | "
                    f"{got.finished} | {got.item_evaluations} | {got.interrupted} | {same} | "
                    f"{_runs(got)}; fronts of {seq['fronts']}/{KILL_GENERATIONS} generations | "
                    f"{gone} | {seq['seconds']:.0f} |")
    return rows


def _kill_section(reference: dict, sequences: list[dict]) -> list[str]:
    budget = KILL_POPULATION * KILL_GENERATIONS
    return [
        "## Driver killed at random points (`kill -9`, then `--resume`)",
        "",
        f"A real `merge3 search` process — the test setting's two tiny BERT experts, "
        f"task-arithmetic genome, population {KILL_POPULATION} × {KILL_GENERATIONS} "
        f"generations = {budget} candidates, 2 Ray workers, its own local Ray — killed with "
        "SIGKILL once at each stage per seed, the stages' order and each count drawn from "
        "`random.Random(seed)` (`ask`: a generation asked; `evaluate`: a result arrived, "
        "not yet told; `log`: a candidate's MLflow run created, not completed; "
        "`generation`: a generation finished, its front not logged; counts among those the "
        "driver can still reach) "
        "(`MERGE3_FAULT_KILL_AT=STAGE:N`, search/testing/kills.py); `--resume` after "
        "each kill, then once more to the end. *Finished*: distinct finished evaluations "
        "(COMPLETE, or FAIL not cut by a kill). *Cut short*: candidates in flight at a kill, "
        "marked FAIL (`interrupted`) on resume and asked again in their slot. *Same as "
        "uninterrupted*: the (generation, slot) places whose candidate — genome, parents' "
        "places, estimates — equals the uninterrupted run's exactly, and whether the Pareto "
        "fronts are equal. *Processes gone*: the longest any process of a killed driver (its "
        "Ray GCS, raylet, agents, workers) outlived it.",
        "",
        "| run | kill points (finished before → after the kill) | finished | item evaluations "
        "| cut short | same as uninterrupted | MLflow candidate runs | processes gone "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|",
        *_kill_rows(reference, sequences),
        "",
    ]


def _runs(t) -> str:
    duplicates = sum(1 for n in t.runs_per_trial.values() if n > 1)
    states = ", ".join(f"{n} {s}" for s, n in sorted(t.run_states.items()))
    return (f"{len(t.runs_per_trial)} trials: {states}; {duplicates} duplicated, "
            f"{t.reconciled} reconciled")


def _test_rows(tests: dict[str, str], results: dict[str, tuple[str, float]]) -> list[str]:
    return [f"| {description} | {results[test][0]} (`{test}`) | {results[test][1]:.0f} |"
            for test, description in tests.items()]


def _commit() -> str:
    commit = subprocess.getoutput(f"git -C {ROOT} rev-parse --short HEAD")
    dirty = subprocess.getoutput(f"git -C {ROOT} status --porcelain --untracked-files=no -- "
                                 "merge3 search evaluators irt tests benchmarks/reliability")
    return commit + (" (with uncommitted changes)" if dirty.strip() else "")


def main() -> None:
    import torch

    from merge3.testing.synthetic import build_family
    from search.testing.setting import build_setting

    torch.set_num_threads(1)
    started = time.time()
    commit = _commit()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        ctx = {"llama": build_family(root / "llama", "llama", experts=3, seed=0),
               "gpt2": build_family(root / "gpt2", "gpt2", experts=2, seed=1),
               "search": build_setting(root / "setting")}
        (root / "bad").mkdir()
        bad = run_bad_inputs(root / "bad", ctx, root)
        (root / "kills").mkdir()
        reference, sequences = run_kills(root / "kills", ctx["search"])
    tested = run_tests({**FAULT_TESTS, **SAFE_DEFAULT_TESTS, **FUZZ_TESTS})
    lines = [
        "# Reliability: faults survived, bad input refused",
        "",
        f"Regenerated by `.venv/bin/python benchmarks/reliability/report.py` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit {commit} "
        f"({time.time() - started:.0f} s; {platform.machine()}, "
        f"{subprocess.getoutput('nproc')} cores shared with other jobs, Python "
        f"{platform.python_version()}).",
        "",
        *_kill_section(reference, sequences),
        "## Faults",
        "",
        "| fault | result | seconds |",
        "|---|---|---|",
        *_test_rows(FAULT_TESTS, tested),
        "",
        "What each checks: the search completes; finished evaluations are never lost "
        "(resume: the final count of finished candidates equals the budget, and an "
        "uninterrupted run's); failed attempts are visible in MLflow "
        "(`merge3.failed_attempts`, `merge3.error`); no candidate is logged twice; a kill "
        "leaves no run RUNNING after --resume (a run cut short while logging is completed "
        "and tagged `merge3.reconciled`).",
        "",
        "## Safe defaults",
        "",
        "| default | result | seconds |",
        "|---|---|---|",
        *_test_rows(SAFE_DEFAULT_TESTS, tested),
        "",
        f"## Fuzzing ({FUZZ_EXAMPLES} hypothesis examples per reader; CI runs 40)",
        "",
        "Each reader either reads the input or raises a `Merge3Error` (one line, naming the "
        "file and the fix); any other exception fails the test.",
        "",
        "| reader | result | seconds |",
        "|---|---|---|",
        *_test_rows(FUZZ_TESTS, tested),
        "",
        f"## Bad input ({len(bad)} cases)",
        "",
        "Each is run through `merge3`'s main: exit code, the one-line message (paths "
        "shortened to …), whether the message names the culprit and the fix, and whether "
        "any output was left behind.",
        "",
        "| area | case | exit | names culprit + fix | no partial output | message |",
        "|---|---|---|---|---|---|",
        *[f"| {a} | {n} | {c} | {'yes' if ok else 'NO'} | {'yes' if clean else 'NO'} | "
          f"{m.replace('|', '/')} |" for a, n, c, m, clean, ok in bad],
        "",
    ]
    out = Path(__file__).with_name("README.md")
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


def kills_only() -> None:
    """Rerun the driver kills alone and replace their section of the README."""
    import torch

    from search.testing.setting import build_setting

    torch.set_num_threads(1)
    started = time.time()
    commit = _commit()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        setting = build_setting(root / "setting")
        (root / "kills").mkdir()
        reference, sequences = run_kills(root / "kills", setting)
    section = _kill_section(reference, sequences)
    section[2:2] = [f"This section regenerated alone (`report.py --kills-only`) on "
                    f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit {commit} "
                    f"({time.time() - started:.0f} s).", ""]
    out = Path(__file__).with_name("README.md")
    text = out.read_text()
    head = text.index("## Driver killed at random points")
    tail = text.index("\n## ", head) + 1
    out.write_text(text[:head] + "\n".join(section) + "\n" + text[tail:])
    print(f"wrote the kill section of {out}")


if __name__ == "__main__":
    kills_only() if "--kills-only" in sys.argv[1:] else main()
