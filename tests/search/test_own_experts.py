"""docs/own-experts.md end to end, through the CLI only: a user's own encoder experts and
tasks -> a population of merges scored with `merge3 eval` -> one item bank per task with
`merge3 irt calibrate --per-task` -> `merge3 search` -> `merge3 export` -> `merge3 eval`."""

from __future__ import annotations

import json
import random

import yaml

from merge3.cli import main


def test_own_experts_own_tasks_own_banks_search_and_export(search_setting, ray_local,
                                                           tmp_path, capsys):
    base, experts = search_setting["base"], search_setting["experts"]
    tasks = ",".join(str(p) for p in search_setting["tasks"].values())
    logs = tmp_path / "logs"

    def evaluate(model, name):
        assert main(["eval", str(model), "--tasks", tasks, "--log-samples", str(logs),
                     "--model-name", name, "--no-progress"]) == 0

    # 1. the population: base, experts and random task-arithmetic merges, every item scored
    evaluate(base, "base")
    for name, path in experts.items():
        evaluate(path, name)
    rng = random.Random(0)
    for k in range(10):
        recipe = {"merge_method": "task_arithmetic", "base_model": str(base),
                  "models": [{"model": str(p), "parameters": {"weight": rng.uniform(0, 1.2)}}
                             for p in experts.values()]}
        (tmp_path / f"m{k}.yaml").write_text(yaml.safe_dump(recipe))
        assert main(["merge", str(tmp_path / f"m{k}.yaml"), str(tmp_path / f"m{k}"), "-q"]) == 0
        evaluate(tmp_path / f"m{k}", f"merge{k}")

    # 2. one bank per task, the folder a search reads
    banks = tmp_path / "banks"
    assert main(["irt", "calibrate", str(logs), "--per-task", "--out", str(banks),
                 "--dims", "1"]) == 0
    assert sorted(p.name for p in banks.iterdir()) == sorted(search_setting["tasks"])

    # 3. the search
    config = {"name": "own", "base_model": str(base),
              "experts": {k: str(v) for k, v in experts.items()},
              "method": "task_arithmetic",
              "genome": {"weight": {"per": "model", "low": 0.0, "high": 1.2}},
              "tasks": {k: str(v) for k, v in search_setting["tasks"].items()},
              "fitness": {"item_bank": str(banks), "anchors": 8},
              "strategy": {"population": 4, "generations": 2, "seed": 0},
              "workers": {"count": 1}}
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["search", str(tmp_path / "search.yaml"), "--run-dir", str(run), "-q"]) == 0
    capsys.readouterr()

    # 4. export a front member and score it like any model
    assert main(["pareto", str(run), "--json"]) == 0
    member = json.loads(capsys.readouterr().out)[0]["trial"]
    out = tmp_path / "exported"
    assert main(["export", str(run), "--trial", str(member), str(out), "-q"]) == 0
    evaluate(out, "exported")
    results = json.loads((logs / "exported" / "results.json").read_text())
    assert set(results["tasks"]) == set(search_setting["tasks"])
    assert all(0.0 <= t["score"] <= 1.0 and t["n"] > 0 for t in results["tasks"].values())
