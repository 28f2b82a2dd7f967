"""Digits networks: small MLPs (and a residual MLP) trained on scikit-learn's bundled
digits from several seeds, the test bed of model alignment (Git Re-Basin, MergeMany,
C²M³).

Every model of a zoo sees the same data split and the same recipe; only the seed
(initialisation and batch order) differs, so the models solve one task in different
"bases" of their hidden units: exactly the setting of Ainsworth et al. (ICLR 2023) and
Crisostomi et al. (C²M³, NeurIPS 2024). A model is saved as ``model.safetensors`` plus a
small ``config.json``; training is deterministic and takes a few seconds on one core.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from merge3.alignment.spec import PermutationSpec, mlp_spec, residual_mlp_spec
from merge3.errors import CheckpointError

__all__ = [
    "DigitsConfig",
    "DigitsData",
    "DigitsMLP",
    "DigitsResMLP",
    "load_digits_data",
    "build_model",
    "train_digits_model",
    "evaluate",
    "save_digits_model",
    "load_digits_model",
    "digits_spec",
    "build_digits_zoo",
    "default_digits_dir",
]

FORMAT = "merge3-digits-v1"


@dataclass(frozen=True, slots=True)
class DigitsConfig:
    """Architecture and training recipe of one digits network."""

    arch: str = "mlp"  # "mlp": 64-h-...-h-10 with ReLU; "resmlp": residual stream
    hidden: int = 64  # MLP width / residual MLP block width
    depth: int = 3  # MLP hidden layers / residual blocks
    width: int = 64  # residual stream width (resmlp only)
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3  # Adam
    weight_decay: float = 0.0
    seed: int = 0  # initialisation and batch order
    split_seed: int = 0  # the train/test split, shared by all models of a zoo

    def recipe_hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class DigitsData:
    """Pixels scaled to [0, 1] (N × 64, float32) and labels (N, int64)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_data(split_seed: int = 0, test_fraction: float = 0.3) -> DigitsData:
    """scikit-learn's 1797 8×8 digits, split stratified and deterministically."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=test_fraction, stratify=digits.target,
        random_state=split_seed,
    )
    return DigitsData(
        torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
        torch.from_numpy(x_te), torch.from_numpy(y_te).long(),
    )


class DigitsMLP(nn.Module):
    """``layers.0 … layers.depth``: 64 → hidden (ReLU) × depth → 10."""

    def __init__(self, hidden: int = 64, depth: int = 3) -> None:
        super().__init__()
        sizes = [64] + [hidden] * depth + [10]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes, sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


class DigitsResMLP(nn.Module):
    """Residual MLP: ``embed`` (64 → width), blocks ``x + fc_out(relu(fc_in(x)))``,
    a LayerNorm, ``head`` (width → 10). The residual stream shares one permutation."""

    def __init__(self, width: int = 64, hidden: int = 64, depth: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(64, width)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"fc_in": nn.Linear(width, hidden), "fc_out": nn.Linear(hidden, width)})
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = x + block["fc_out"](torch.relu(block["fc_in"](x)))
        return self.head(self.norm(x))


def build_model(config: DigitsConfig) -> nn.Module:
    if config.arch == "mlp":
        return DigitsMLP(config.hidden, config.depth)
    if config.arch == "resmlp":
        return DigitsResMLP(config.width, config.hidden, config.depth)
    raise CheckpointError(f"Unknown digits architecture {config.arch!r}.",
                          fix="use arch='mlp' or arch='resmlp'.")


def digits_spec(config: DigitsConfig) -> PermutationSpec:
    """The permutation spec of a digits network built from ``config``."""
    if config.arch == "mlp":
        return mlp_spec(f"layers.{i}" for i in range(config.depth + 1))
    blocks = [(f"blocks.{i}.fc_in", f"blocks.{i}.fc_out") for i in range(config.depth)]
    return residual_mlp_spec("embed", blocks, "head", norms=["norm"])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``(x, y)``."""
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    return float((logits.argmax(-1) == y).float().mean().item()), float(loss)


def train_digits_model(
    config: DigitsConfig, data: DigitsData | None = None
) -> tuple[nn.Module, dict[str, float]]:
    """Train one network with Adam on minibatches; deterministic given ``config.seed``."""
    data = data or load_digits_data(config.split_seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and polite to the other core
    try:
        torch.manual_seed(config.seed)
        model = build_model(config)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        generator = torch.Generator().manual_seed(config.seed)
        n = len(data.x_train)
        for _ in range(config.epochs):
            model.train()
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, config.batch_size):
                batch = order[start : start + config.batch_size]
                loss = nn.functional.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        train_acc, train_loss = evaluate(model, data.x_train, data.y_train)
        test_acc, test_loss = evaluate(model, data.x_test, data.y_test)
    finally:
        torch.set_num_threads(threads)
    metrics = {"train_accuracy": train_acc, "train_loss": train_loss,
               "test_accuracy": test_acc, "test_loss": test_loss}
    return model, metrics


def save_digits_model(
    model: nn.Module, config: DigitsConfig, out_dir: str | Path, metrics: dict[str, float]
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (atomically, via temp names)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"format": FORMAT})
    os.replace(tmp, out / "model.safetensors")
    meta = {"format": FORMAT, "config": asdict(config), "recipe_hash": config.recipe_hash(),
            "metrics": metrics}
    (out / "config.json.tmp").write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(out / "config.json.tmp", out / "config.json")
    return out


def _read_meta(path: Path) -> dict:
    config_file = path / "config.json"
    if not config_file.is_file() or not (path / "model.safetensors").is_file():
        raise CheckpointError(
            f"{path} is not a digits model (needs model.safetensors and config.json).",
            fix="build it with merge3.zoo.digits.build_digits_zoo().",
        )
    meta = json.loads(config_file.read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{config_file} is not a {FORMAT} config.",
                              fix="rebuild the digits zoo.")
    return meta


def load_digits_model(path: str | Path) -> tuple[nn.Module, DigitsConfig]:
    """Load a model written by :func:`save_digits_model`."""
    path = Path(path)
    config = DigitsConfig(**_read_meta(path)["config"])
    model = build_model(config)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.eval()
    return model, config


def default_digits_dir() -> Path:
    home = os.environ.get("MERGE3_HOME")
    root = Path(home) if home else Path.home() / ".cache" / "merge3"
    return root / "digits"


def build_digits_zoo(
    out_dir: str | Path | None = None,
    seeds: Iterable[int] = range(5),
    config: DigitsConfig | None = None,
    verbose: bool = False,
) -> list[Path]:
    """Train (or reuse, when the recipe is unchanged) one model per seed.

    Models go to ``OUT/<arch>-h<hidden>-d<depth>/seed<k>/``; a ``report.json`` beside
    them lists the per-seed accuracies. Returns the model directories in seed order.
    """
    base = config or DigitsConfig()
    root = Path(out_dir) if out_dir is not None else default_digits_dir()
    group = root / f"{base.arch}-h{base.hidden}-d{base.depth}"
    data = load_digits_data(base.split_seed)
    paths, report = [], {}
    for seed in seeds:
        cfg = replace(base, seed=seed)
        path = group / f"seed{seed}"
        try:
            meta = _read_meta(path)
            fresh = meta.get("recipe_hash") == cfg.recipe_hash()
        except CheckpointError:
            fresh = False
        if fresh:
            metrics = meta["metrics"]
        else:
            model, metrics = train_digits_model(cfg, data)
            save_digits_model(model, cfg, path, metrics)
        if verbose:
            print(f"seed {seed}: test accuracy {metrics['test_accuracy']:.4f}"
                  f"{' (cached)' if fresh else ''}")
        report[f"seed{seed}"] = metrics
        paths.append(path)
    (group / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return paths
