"""Bad inputs, one per case: each must fail with one clear line naming the culprit and
the fix, a non-zero exit code, and no partial output.

Each case writes its bad input under a scratch directory and returns the `merge3`
arguments, the output path that must not appear, and a regex the error must match
(the culprit's name). Used by tests/reliability/test_bad_input.py and by
benchmarks/reliability/report.py, which regenerates the table in that folder's README.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file


@dataclass(frozen=True)
class Case:
    name: str
    area: str
    build: Callable[[Path, dict], tuple[list[str], Path | None, str]]


def _family(ctx: dict) -> dict[str, Path]:
    return ctx["llama"]


def _recipe(tmp: Path, data: dict, name: str = "recipe.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(data))
    return path


def _ta(ctx: dict, *models: Path, method: str = "task_arithmetic", **extra) -> dict:
    return {"merge_method": method, "base_model": str(_family(ctx)["base"]),
            "models": [{"model": str(m)} for m in models], **extra}


def _edited(ctx: dict, tmp: Path, change: Callable[[dict], None]) -> Path:
    out = tmp / "edited"
    shutil.copytree(_family(ctx)["expert_1"], out)
    state = load_file(str(out / "model.safetensors"))
    change(state)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def _merge_case(change_model: Callable[[Path, dict], Path] | None = None, *,
                recipe: Callable[[Path, dict], dict] | None = None, pattern: str,
                extra_args: tuple[str, ...] = ()):
    def build(tmp: Path, ctx: dict):
        if recipe is not None:
            data = recipe(tmp, ctx)
        else:
            model = change_model(tmp, ctx)
            data = _ta(ctx, model)
        out = tmp / "merged"
        return ["merge", str(_recipe(tmp, data)), str(out), "-q", *extra_args], out, pattern
    return build


NAME = "model.layers.1.mlp.up_proj.weight"


def _truncated(tmp: Path, ctx: dict) -> Path:
    out = tmp / "trunc"
    shutil.copytree(_family(ctx)["expert_1"], out)
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) * 2 // 3])
    return out


def _garbage(tmp: Path, ctx: dict) -> Path:
    out = tmp / "garbage"
    shutil.copytree(_family(ctx)["expert_1"], out)
    (out / "model.safetensors").write_bytes((12).to_bytes(8, "little") + b"not a header")
    return out


def _bad_dtype(tmp: Path, ctx: dict) -> Path:
    out = tmp / "fp8"
    shutil.copytree(_family(ctx)["expert_1"], out)
    header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})
    header += " " * (-len(header) % 8)
    (out / "model.safetensors").write_bytes(
        len(header).to_bytes(8, "little") + header.encode() + b"\x00\x00")
    return out


def _missing_shard(tmp: Path, ctx: dict) -> Path:
    out = tmp / "sharded"
    shutil.copytree(_family(ctx)["expert_1"], out)
    (out / "model.safetensors").rename(out / "model-00001-of-00002.safetensors")
    names = load_file(str(out / "model-00001-of-00002.safetensors"))
    index = {"weight_map": {n: "model-00001-of-00002.safetensors" for n in names}}
    index["weight_map"]["extra.weight"] = "model-00002-of-00002.safetensors"
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    return out


def _bad_config(tmp: Path, ctx: dict) -> Path:
    out = tmp / "badconfig"
    shutil.copytree(_family(ctx)["expert_1"], out)
    (out / "config.json").write_text("{ not json")
    return out


def _pickle_only(tmp: Path, ctx: dict) -> Path:
    out = tmp / "pickled"
    out.mkdir()
    shutil.copy(_family(ctx)["expert_1"] / "config.json", out / "config.json")
    torch.save(load_file(str(_family(ctx)["expert_1"] / "model.safetensors")),
               out / "pytorch_model.bin")
    return out


def _nonempty_out(tmp: Path, ctx: dict):
    out = tmp / "merged"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    data = _ta(ctx, _family(ctx)["expert_1"])
    return (["merge", str(_recipe(tmp, data)), str(out), "-q"], None,
            r"merged exists and is not empty.*--overwrite")


def _search_config(ctx: dict, **changes) -> dict:
    setting = ctx["search"]
    config = {
        "name": "bad", "base_model": str(setting["base"]),
        "experts": {k: str(v) for k, v in setting["experts"].items()},
        "method": "task_arithmetic",
        "genome": {"weight": {"per": "model", "low": 0.0, "high": 1.0}},
        "tasks": {k: str(v) for k, v in setting["tasks"].items()},
        "fitness": {"estimator": "mp-irt", "item_bank": str(setting["banks"]), "anchors": 5},
        "strategy": {"population": 2, "generations": 1},
    }
    config.update(changes)
    return config


def _search_case(changes: Callable[[dict, Path], dict], pattern: str):
    def build(tmp: Path, ctx: dict):
        config = changes(_search_config(ctx), tmp)
        path = tmp / "search.yaml"
        path.write_text(yaml.safe_dump(config))
        run_dir = tmp / "run"
        return ["search", str(path), "--run-dir", str(run_dir), "-q"], run_dir, pattern
    return build


def _responses(tmp: Path, text: str, name: str = "responses.csv") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _binary(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _good_rows(models: int = 6, items: int = 8, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"m{m},q{i},{int(rng.random() < 0.3 + 0.1 * m)}"
            for m in range(models) for i in range(items)]


def _calibrate_case(text: Callable[[], str], pattern: str, name: str = "responses.csv"):
    def build(tmp: Path, ctx: dict):
        bank = tmp / "bank"
        return (["irt", "calibrate", str(_responses(tmp, text(), name)), "--out", str(bank),
                 "--model", "2pl"], bank, pattern)
    return build


def _bank_version(tmp: Path, ctx: dict):
    bank = tmp / "bank"
    shutil.copytree(ctx["search"]["banks"] / "alpha", bank)
    meta = next(p for p in bank.iterdir() if p.suffix == ".json")
    data = json.loads(meta.read_text())
    data["format"] = "merge3-irt-bank-v999"
    meta.write_text(json.dumps(data))
    responses = _responses(tmp, "model,item,score\nx,alpha/alpha-000,1\n")
    return ["irt", "estimate", str(bank), str(responses)], None, r"bank.*(format|version)"


def _bank_arrays_corrupt(tmp: Path, ctx: dict):
    bank = tmp / "bank"
    shutil.copytree(ctx["search"]["banks"] / "alpha", bank)
    blob = (bank / "params.npz").read_bytes()
    (bank / "params.npz").write_bytes(blob[: len(blob) // 2])
    responses = _responses(tmp, "model,item,score\nx,alpha/alpha-000,1\n")
    return ["irt", "estimate", str(bank), str(responses)], None, r"params.npz cannot be read"


def _unknown_items(tmp: Path, ctx: dict):
    responses = _responses(tmp, "model,item,score\nx,alpha/nope-1,1\nx,alpha/nope-2,0\n")
    bank = ctx["search"]["banks"] / "alpha"
    return ["irt", "estimate", str(bank), str(responses)], None, r"(share no item|not in the bank)"


def _anchors_unknown(tmp: Path, ctx: dict):
    anchors = tmp / "anchors.json"
    anchors.write_text(json.dumps({"format": "merge3-irt-anchors-v1", "method": "random",
                                   "seed": 0, "k": 1,
                                   "items": [{"item": "alpha/ghost", "index": 0,
                                              "weight": 1.0}]}))
    log_dir = tmp / "logs"
    setting = ctx["search"]
    return (["eval", str(setting["base"]), "--tasks", str(setting["tasks"]["alpha"]),
             "--items", str(anchors), "--log-samples", str(log_dir)], log_dir, r"ghost")


def _task_missing_fields(tmp: Path, ctx: dict):
    task = tmp / "task.yaml"
    task.write_text("task: broken\nformat: classification\n"
                    "dataset:\n  data_files: nowhere.jsonl\n")
    log_dir = tmp / "logs"
    return (["eval", str(ctx["search"]["base"]), "--tasks", str(task), "--log-samples",
             str(log_dir)], log_dir, r"task.yaml")


def _no_tokenizer(tmp: Path, ctx: dict):
    model = tmp / "no_tok"
    model.mkdir()
    for entry in ctx["search"]["base"].iterdir():
        if not entry.name.startswith(("tokenizer", "special_tokens", "vocab")):
            (shutil.copytree if entry.is_dir() else shutil.copy)(entry, model / entry.name)
    log_dir = tmp / "logs"
    return (["eval", str(model), "--tasks", str(ctx["search"]["tasks"]["alpha"]),
             "--log-samples", str(log_dir)], log_dir, r"no tokenizer")


# -- hostile inputs of issue #16: outputs onto inputs, out-of-range parameters, odd files --

def _own_family(tmp: Path, ctx: dict) -> dict[str, Path]:
    """Copies of the base and expert_1 under ``tmp``: a guard that failed would destroy
    these, never the shared fixture."""
    own = {k: tmp / "models" / k for k in ("base", "expert_1")}
    for key, path in own.items():
        shutil.copytree(_family(ctx)[key], path)
    return own


def _onto_input(where: Callable[[dict[str, Path]], Path], overwrite: bool, pattern: str,
                *, output_must_not_appear: bool = True):
    def build(tmp: Path, ctx: dict):
        own = _own_family(tmp, ctx)
        data = {"merge_method": "task_arithmetic", "base_model": str(own["base"]),
                "models": [{"model": str(own["expert_1"])}]}
        out = where(own)
        argv = ["merge", str(_recipe(tmp, data)), str(out), "-q"]
        return (argv + ["--overwrite"] if overwrite else argv,
                out if output_must_not_appear else None, pattern)
    return build


def _output_is_a_file(tmp: Path, ctx: dict):
    (tmp / "taken").write_text("a file, not a directory")
    data = _ta(ctx, _family(ctx)["expert_1"])
    return (["merge", str(_recipe(tmp, data)), str(tmp / "taken"), "-q"], None,
            r"taken exists and is not a directory")


def _nested_yaml(tmp: Path, ctx: dict):
    text = "merge_method: " + "[" * 5000 + "]" * 5000 + "\n"
    return (["merge", str(_responses(tmp, text, "deep.yaml")), str(tmp / "m"), "-q"],
            tmp / "m", r"nested too deeply")


def _symlink_loop(tmp: Path, ctx: dict):
    loop = tmp / "loop"
    loop.symlink_to(loop)
    data = _ta(ctx, loop)
    return ["merge", str(_recipe(tmp, data)), str(tmp / "m"), "-q"], tmp / "m", r"loop"


def _nan_expert_config(cfg: dict, tmp: Path) -> dict:
    name, source = next(iter(cfg["experts"].items()))
    poisoned = tmp / "poisoned"
    shutil.copytree(source, poisoned)
    weights = poisoned / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(weights), metadata={"format": "pt"})
    return {**cfg, "experts": {**cfg["experts"], name: str(poisoned)}}


def _swapped_banks_config(cfg: dict, tmp: Path) -> dict:
    banks = Path(cfg["fitness"]["item_bank"])
    tasks = sorted(p.name for p in banks.iterdir() if p.is_dir())
    swapped = tmp / "swapped_banks"
    for task, other in zip(tasks, tasks[1:] + tasks[:1]):
        shutil.copytree(banks / other, swapped / task)
    return {**cfg, "fitness": {**cfg["fitness"], "item_bank": str(swapped)}}



CASES: list[Case] = [
    # -- checkpoints -------------------------------------------------------------------------
    Case("truncated safetensors", "checkpoint",
         _merge_case(_truncated, pattern=r"trunc/model.safetensors is truncated")),
    Case("corrupt safetensors header", "checkpoint",
         _merge_case(_garbage, pattern=r"garbage/model.safetensors is not a valid")),
    Case("unsupported tensor dtype (FP8)", "checkpoint",
         _merge_case(_bad_dtype, pattern=r"dtype 'F8_E4M3'")),
    Case("NaN in a tensor", "checkpoint", _merge_case(
        lambda t, c: _edited(c, t, lambda s: s[NAME].__setitem__((0, 0), float("nan"))),
        pattern=rf"'{NAME}' in .*edited contains NaN")),
    Case("Inf in a tensor", "checkpoint", _merge_case(
        lambda t, c: _edited(c, t, lambda s: s[NAME].__setitem__((0, 0), float("inf"))),
        pattern=rf"'{NAME}' in .*edited contains NaN or Inf")),
    Case("tensor missing from a model", "checkpoint", _merge_case(
        lambda t, c: _edited(c, t, lambda s: s.pop(NAME)), pattern=rf"'{NAME}'.*missing")),
    Case("shape mismatch", "checkpoint", _merge_case(
        lambda t, c: _edited(c, t, lambda s: s.__setitem__(NAME, torch.zeros(2, 2))),
        pattern=rf"Shape mismatch for tensor '{NAME}'")),
    Case("architectures differ", "checkpoint", _merge_case(
        lambda t, c: c["gpt2"]["expert_1"], pattern=r"Architectures differ")),
    Case("pickle weights without opt-in", "checkpoint",
         _merge_case(_pickle_only, pattern=r"pickled holds only pickle weights.*--allow-pickle")),
    Case("index names a missing shard", "checkpoint",
         _merge_case(_missing_shard, pattern=r"model-00002-of-00002.safetensors .* missing")),
    Case("config.json is not JSON", "checkpoint",
         _merge_case(_bad_config, pattern=r"badconfig/config.json is not valid JSON")),
    Case("model directory missing", "checkpoint",
         _merge_case(lambda t, c: t / "nowhere", pattern=r"nowhere' does not exist")),
    # -- recipes -----------------------------------------------------------------------------
    Case("unknown recipe key", "recipe", _merge_case(
        recipe=lambda t, c: {**_ta(c, _family(c)["expert_1"]), "dtpye": "float16"},
        pattern=r"unknown key 'dtpye'.*Did you mean 'dtype'")),
    Case("unknown key in a model entry", "recipe", _merge_case(
        recipe=lambda t, c: {**_ta(c), "models": [{"model": "x", "weight": 1}]},
        pattern=r"models.0.weight")),
    Case("unknown merge method", "recipe", _merge_case(
        recipe=lambda t, c: _ta(c, _family(c)["expert_1"], method="task_arithmatic"),
        pattern=r"Unknown merge method 'task_arithmatic'.*Did you mean 'task_arithmetic'")),
    Case("unknown method parameter", "recipe", _merge_case(
        recipe=lambda t, c: _ta(c, _family(c)["expert_1"], method="ties",
                                parameters={"dencity": 0.5}),
        pattern=r"no parameter 'dencity'.*Did you mean 'density'")),
    Case("base model missing for TIES", "recipe", _merge_case(
        recipe=lambda t, c: {"merge_method": "ties",
                             "models": [{"model": str(_family(c)["expert_1"])}]},
        pattern=r"ties needs a base model")),
    Case("SLERP given two models", "recipe", _merge_case(
        recipe=lambda t, c: _ta(c, _family(c)["expert_1"], _family(c)["expert_2"],
                                method="slerp"),
        pattern=r"slerp merges exactly 1 model")),
    Case("wrong value type", "recipe", _merge_case(
        recipe=lambda t, c: {**_ta(c, _family(c)["expert_1"]), "seed": "abc"},
        pattern=r"seed")),
    Case("slice sources of different lengths", "recipe", _merge_case(
        recipe=lambda t, c: {"merge_method": "linear", "slices": [
            {"sources": [{"model": str(_family(c)["expert_1"]), "layer_range": [0, 2]},
                         {"model": str(_family(c)["expert_2"]), "layer_range": [0, 3]}]}]},
        pattern=r"same number of layers")),
    Case("slice layers beyond the model", "recipe", _merge_case(
        recipe=lambda t, c: {"merge_method": "passthrough", "slices": [
            {"sources": [{"model": str(_family(c)["expert_1"]), "layer_range": [0, 9]}]}]},
        pattern=r"layer")),
    Case("recipe is not UTF-8 text", "recipe", lambda t, c: (
        ["merge", str(_binary(t, "r.yaml", b"merge_method: \xff\xfe ties\n")), str(t / "m"),
         "-q"], t / "m", r"r.yaml is not UTF-8")),
    Case("recipe is not valid YAML", "recipe", lambda t, c: (
        ["merge", str(_responses(t, "merge_method: [ties", "r.yaml")), str(t / "m"), "-q"],
        t / "m", r"r.yaml is not valid YAML")),
    Case("output directory not empty", "recipe", _nonempty_out),
    Case("bad shard size", "recipe", _merge_case(
        lambda t, c: _family(c)["expert_1"], pattern=r"shard size 'lots'",
        extra_args=("--out-shard-size", "lots"))),
    # -- search configs ----------------------------------------------------------------------
    Case("unknown search config key", "search config", _search_case(
        lambda cfg, t: {**cfg, "workerz": {}}, r"unknown key 'workerz'.*Did you mean 'workers'")),
    Case("gene bounds inverted", "search config", _search_case(
        lambda cfg, t: {**cfg, "genome": {"weight": {"per": "model", "low": 2, "high": 1}}},
        r"genome.weight.*low \(2.0\) must be below high")),
    Case("gene for a parameter the method lacks", "search config", _search_case(
        lambda cfg, t: {**cfg, "genome": {"densty": {"low": 0, "high": 1}}},
        r"no parameter 'densty'")),
    Case("expert model missing", "search config", _search_case(
        lambda cfg, t: {**cfg, "experts": {**cfg["experts"], "alpha": str(t / "gone")}},
        r"gone' does not exist")),
    Case("IRT fitness without an item bank", "search config", _search_case(
        lambda cfg, t: {**cfg, "fitness": {"estimator": "mp-irt"}}, r"needs fitness.item_bank")),
    Case("objective that is not a task", "search config", _search_case(
        lambda cfg, t: {**cfg, "objectives": ["gamma"]}, r"objective 'gamma' is not in tasks")),
    Case("population below 2", "search config", _search_case(
        lambda cfg, t: {**cfg, "strategy": {"population": 1}}, r"strategy.population")),
    # -- response files ----------------------------------------------------------------------
    Case("CSV without the score column", "responses", _calibrate_case(
        lambda: "model,item\nm0,q0\n", r"responses.csv.*score")),
    Case("non-numeric score", "responses", _calibrate_case(
        lambda: "model,item,score\n" + "\n".join(_good_rows()) + "\nm1,q9,high\n",
        r"responses.csv.*(line|row) \d+")),
    Case("score outside [0, 1]", "responses", _calibrate_case(
        lambda: "model,item,score\n" + "\n".join(_good_rows()) + "\nm1,q9,7\n",
        r"responses.csv.*(line|row) \d+")),
    Case("row with more fields than the header", "responses", _calibrate_case(
        lambda: "model,item,score\n" + "\n".join(_good_rows()) + "\nm1,q9,1,0.5\n",
        r"responses.csv, line 50: 4 fields where the header has 3")),
    Case("duplicate rows", "responses", _calibrate_case(
        lambda: "model,item,score\n" + "\n".join(_good_rows() + _good_rows()[:1]) + "\n",
        r"responses.csv.*duplicate")),
    Case("malformed lm-eval samples line", "responses", _calibrate_case(
        lambda: '{"doc_id": 0, "acc": 1.0}\n{"doc_id": 1, "acc": \n',
        r"samples_arc.jsonl.*line 2", name="samples_arc.jsonl")),
    # -- item banks and anchors ----------------------------------------------------------------
    Case("item bank of another format version", "item bank", _bank_version),
    Case("item bank arrays truncated", "item bank", _bank_arrays_corrupt),
    Case("responses share no item with the bank", "item bank", _unknown_items),
    Case("anchor item not in the task", "evaluation", _anchors_unknown),
    Case("task file with missing fields", "evaluation", _task_missing_fields),
    Case("model without a tokenizer", "evaluation", _no_tokenizer),
    # -- hostile inputs (issue #16) -----------------------------------------------------------
    Case("output is the base, with --overwrite", "protection", _onto_input(
        lambda own: own["base"], True, r"is the input model", output_must_not_appear=False)),
    Case("output inside an expert's directory", "protection", _onto_input(
        lambda own: own["expert_1"] / "merged", False, r"lies inside the input model")),
    Case("output contains the inputs, with --overwrite", "protection", _onto_input(
        lambda own: own["base"].parent, True, r"contains the input model",
        output_must_not_appear=False)),
    Case("output is a file", "protection", _output_is_a_file),
    Case("TIES density above 1", "recipe", _merge_case(recipe=lambda t, c: {
        "merge_method": "ties", "base_model": str(_family(c)["base"]),
        "models": [{"model": str(_family(c)["expert_1"]),
                    "parameters": {"weight": 1.0, "density": 1.5}}]},
        pattern=r"density: 1.5 is outside the valid range")),
    Case("normalised weights summing to 0", "recipe", _merge_case(recipe=lambda t, c: {
        "merge_method": "linear", "parameters": {"normalize": True},
        "models": [{"model": str(_family(c)["expert_1"]), "parameters": {"weight": 1.0}},
                   {"model": str(_family(c)["expert_2"]), "parameters": {"weight": -1.0}}]},
        pattern=r"weights sum to 0")),
    Case("YAML nested 5000 levels deep", "recipe", _nested_yaml),
    Case("model path is a symlink to itself", "recipe", _symlink_loop),
    Case("expert with one NaN (search)", "search config", _search_case(
        _nan_expert_config, r"NaN|non-finite")),
    Case("item banks of other tasks (search)", "search config", _search_case(
        _swapped_banks_config, r"item bank of task '\w+'.*does not have")),
    Case("anchors above the bank size (search)", "search config", _search_case(
        lambda cfg, t: {**cfg, "fitness": {**cfg["fitness"], "anchors": 100000}},
        r"fitness.anchors is 100000")),
    Case("an expert listed twice (search)", "search config", _search_case(
        lambda cfg, t: {**cfg, "experts": {**cfg["experts"],
                                           "again": next(iter(cfg["experts"].values()))}},
        r"are the same model")),
    Case("the base among the experts (search)", "search config", _search_case(
        lambda cfg, t: {**cfg, "experts": {**cfg["experts"], "base": cfg["base_model"]}},
        r"is the base model")),
]
