"""``merge3 align MODELS... --out DIR``: align checkpoints and write them and their average.

The main ``merge3`` parser calls :func:`register`; the handler returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from merge3.alignment.merge import (
    ALIGNMENTS,
    align_models,
    alignment_options,
    permutations_to_lists,
)
from merge3.alignment.spec import PermutationSpec, infer_spec
from merge3.errors import CheckpointError, Merge3Error

if TYPE_CHECKING:
    from merge3.alignment.merge import AlignmentResult
    from merge3.zoo.digits import DigitsConfig

__all__ = ["register", "handler", "load_state_dict", "spec_for_checkpoint"]

EPILOG = """\
examples:
  merge3 align ~/.cache/merge3/digits/mlp-h64-d3/seed0 ~/.cache/merge3/digits/mlp-h64-d3/seed1 \\
      ~/.cache/merge3/digits/mlp-h64-d3/seed2 --out runs/aligned --method c2m3

writes DIR/aligned/model_<i>/ (model i permuted into the common frame, with its other
files copied), DIR/average/ (the uniform average of the aligned models) and
DIR/alignment.json (method, permutations, objective per iteration). With --repair
(digits networks only) also DIR/average_repaired/, renormalised by REPAIR on the
digits training images.
"""

_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights of a checkpoint: a ``.safetensors`` file, or a directory with
    ``model.safetensors`` or shards listed in ``model.safetensors.index.json``."""
    if path.is_file() and path.suffix == ".safetensors":
        return load_file(str(path))
    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(path / shard)))
        return state
    raise CheckpointError(
        f"No safetensors weights at {path}.",
        fix="pass a .safetensors file or a directory holding model.safetensors "
        "(or its shards and model.safetensors.index.json).",
    )


def spec_for_checkpoint(path: Path, state_dict: dict[str, torch.Tensor]) -> PermutationSpec:
    """The spec of a digits network (from its config.json), else :func:`infer_spec`."""
    config_file = path / "config.json" if path.is_dir() else None
    if config_file is not None and config_file.is_file():
        meta = json.loads(config_file.read_text())
        if meta.get("format") == "merge3-digits-v1":
            from merge3.zoo.digits import DigitsConfig, digits_spec

            return digits_spec(DigitsConfig(**meta["config"]))
    return infer_spec(state_dict)


def _write_checkpoint(source: Path, state: dict[str, torch.Tensor], out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if source.is_dir():  # keep config, tokenizer, heads... beside the weights
        for item in source.iterdir():
            if item.name in _WEIGHTS or item.name.startswith("model-0"):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def _digits_config(path: Path) -> DigitsConfig:
    """The digits config of a checkpoint, or an error saying why --repair cannot run."""
    from merge3.zoo.digits import load_digits_model

    try:
        return load_digits_model(path)[1]
    except CheckpointError as err:
        raise CheckpointError(
            f"--repair needs data, which merge3 only has for digits networks: {err.message}",
            fix="drop --repair, or call merge3.alignment.repair.repair() with your data.",
        ) from err


def _repaired_digits_average(
    config: DigitsConfig, result: AlignmentResult
) -> dict[str, torch.Tensor]:
    """REPAIR the average of aligned digits networks on the digits training images."""
    from merge3.alignment.repair import repair
    from merge3.zoo.digits import build_model, load_digits_data

    def module(state: dict[str, torch.Tensor]) -> torch.nn.Module:
        model = build_model(config)
        model.load_state_dict(state)
        return model

    layers = ([f"layers.{i}" for i in range(config.depth)] if config.arch == "mlp"
              else [f"blocks.{i}.fc_in" for i in range(config.depth)])
    data = load_digits_data(config.split_seed)
    endpoints = [module(state) for state in result.aligned]
    return repair(module(result.merged), endpoints, data.x_train, layers).state_dict()


def _options(args: argparse.Namespace) -> dict:
    """The options of ``merge3 align`` that ``--method`` takes; an option it does not take
    (e.g. --anchor for rebasin) is an error rather than silently ignored."""
    accepted = alignment_options(args.method)
    if args.anchor and "anchor" not in accepted:
        takers = [m for m in ALIGNMENTS if "anchor" in alignment_options(m)]
        raise Merge3Error(f"--anchor applies to {', '.join(takers)}, not to {args.method}.",
                          fix=f"drop --anchor or use --method {takers[0]}.")

    def report(iteration: int, objective: float, step: float) -> None:
        if args.verbose:
            print(f"iteration {iteration}: objective {objective:.6g} step {step:.4f}")

    given = {"seed": args.seed, "max_iter": args.max_iter, "callback": report,
             "progress": not args.verbose, "anchor": 0 if args.anchor else None}
    return {k: v for k, v in given.items() if k in accepted}


def handler(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
        paths = [Path(p).expanduser() for p in args.models]
        digits_config = _digits_config(paths[0]) if args.repair else None  # fail early
        states = [load_state_dict(p) for p in paths]
        spec = spec_for_checkpoint(paths[0], states[0])
        result = align_models(states, spec, args.method, **options)
        out = Path(args.out).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        for i, (path, aligned) in enumerate(zip(paths, result.aligned)):
            _write_checkpoint(path, aligned, out / "aligned" / f"model_{i}")
        _write_checkpoint(paths[0], result.merged, out / "average")
        if digits_config is not None:
            repaired = _repaired_digits_average(digits_config, result)
            _write_checkpoint(paths[0], repaired, out / "average_repaired")
        summary = {
            "method": args.method,
            "models": [str(p) for p in paths],
            "objective": result.objective,
            "perms": [permutations_to_lists(p) for p in result.perms],
        }
        (out / "alignment.json").write_text(json.dumps(summary) + "\n")
    except Merge3Error as err:
        print(f"merge3 align: error: {err}", file=sys.stderr)
        return 2
    final = f", final objective {result.objective[-1]:.6g}" if result.objective else ""
    print(f"aligned {len(paths)} models with {args.method}{final}; wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``align`` to the ``merge3`` command's subparsers."""
    parser = subparsers.add_parser(
        "align",
        help="permute models into a common frame (C²M³, Git Re-Basin, MergeMany) and average",
        description="Align checkpoints of one architecture by permuting their hidden units, "
        "then write the aligned models and their average as safetensors checkpoints.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="checkpoint directories or .safetensors files (two or more)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--method", choices=[m for m in ALIGNMENTS if m != "naive"],
                        default="c2m3", help="alignment method (default: c2m3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--max-iter", type=int, default=200,
                        help="C²M³ Frank-Wolfe iterations at most (default: 200)")
    parser.add_argument("--anchor", action="store_true",
                        help="C²M³: keep the first model's unit order as the universe "
                        "(often better on residual networks; always on for two models)")
    parser.add_argument("--repair", action="store_true",
                        help="also write average_repaired/ (REPAIR; digits networks only)")
    parser.add_argument("--verbose", action="store_true",
                        help="print the objective at every iteration")
    parser.set_defaults(func=handler)
