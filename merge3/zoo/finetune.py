"""Linear probes and full fine-tuning of the encoder with a classification head.

The probe is a multinomial logistic regression (scikit-learn, L2) on the frozen base's
mean-pooled features; fine-tuning starts its head from the probe (LP-FT, Kumar et al.,
ICLR 2022: a good head keeps the encoder's features from being distorted early) and
trains the encoder and the head with AdamW, linear warm-up and decay. The word-embedding
matrix stays frozen unless asked: with a thousand examples only the rows of seen tokens
would move, and its 11.7 M entries are half of MiniLM's weights. Frozen, the experts' task
vectors live in the transformer layers, and a TIES merge of six experts takes 8 s instead
of 21 s on one core (a fine-tuning step is ~8% cheaper).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from merge3.zoo.encoder import pool_mean

__all__ = ["LinearProbe", "fit_probe", "FinetuneConfig", "finetune", "head_accuracy"]


@dataclass
class LinearProbe:
    """logits = features @ weight.T + bias; weight (C, d), bias (C,)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        return feats @ self.weight.T + self.bias


def fit_probe(
    train_features: torch.Tensor,
    train_labels: Sequence[int],
    num_classes: int,
    *,
    val_features: torch.Tensor | None = None,
    val_labels: Sequence[int] | None = None,
    c_grid: Sequence[float] = (0.1, 0.3, 1.0, 3.0),
) -> tuple[LinearProbe, float]:
    """An L2 logistic-regression head on frozen features; ``C`` chosen on validation.

    Returns the head and the chosen ``C``. A binary model's single logit z becomes the
    two logits (−z/2, z/2), which give the same probabilities.
    """
    from sklearn.linear_model import LogisticRegression

    x = train_features.double().numpy()
    y = np.asarray(train_labels)
    best: tuple[float, float, LogisticRegression] | None = None
    grid = c_grid if val_features is not None and len(c_grid) > 1 else c_grid[:1]
    for c in grid:
        clf = LogisticRegression(C=c, max_iter=3000, tol=1e-5).fit(x, y)
        score = (clf.score(val_features.double().numpy(), np.asarray(val_labels))
                 if val_features is not None else 0.0)
        if best is None or score > best[0]:
            best = (score, c, clf)
    assert best is not None
    _, c, clf = best
    coef = torch.zeros(num_classes, x.shape[1], dtype=torch.float64)
    bias = torch.zeros(num_classes, dtype=torch.float64)
    classes = [int(k) for k in clf.classes_]
    if len(classes) == 2 and clf.coef_.shape[0] == 1:
        z_w, z_b = torch.from_numpy(clf.coef_[0]), float(clf.intercept_[0])
        coef[classes[0]], coef[classes[1]] = -z_w / 2, z_w / 2
        bias[classes[0]], bias[classes[1]] = -z_b / 2, z_b / 2
    else:
        for row, k in enumerate(classes):
            coef[k] = torch.from_numpy(clf.coef_[row])
            bias[k] = float(clf.intercept_[row])
        missing = [k for k in range(num_classes) if k not in classes]
        bias[missing] = -1e4  # a class never seen in training is never predicted
    return LinearProbe(coef.float(), bias.float()), c


@dataclass(frozen=True)
class FinetuneConfig:
    """Full fine-tuning of the encoder with a probe-initialised head."""

    steps: int = 100
    batch_size: int = 32
    lr: float = 5e-5  # encoder
    head_lr: float = 5e-4
    warmup: float = 0.1  # fraction of steps
    weight_decay: float = 0.0
    seed: int = 0
    train_word_embeddings: bool = False


def _schedule(step: int, cfg: FinetuneConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm))


def finetune(
    model: torch.nn.Module,
    head: LinearProbe,
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    cfg: FinetuneConfig,
    *,
    on_step: Callable[[int, float], None] | None = None,
    snapshot_at: Sequence[int] = (),
    on_snapshot: Callable[[int, torch.nn.Module, LinearProbe], None] | None = None,
) -> LinearProbe:
    """Fine-tune ``model`` in place on token-id lists; returns the trained head.

    Batches are drawn by a seeded sampler (reshuffled each epoch) and padded to their
    longest text; the word embeddings train only if ``cfg.train_word_embeddings``.
    ``on_snapshot(step, model, head)`` is called after the steps listed in ``snapshot_at``
    (checkpoints along fine-tuning).
    """
    embeddings = model.get_input_embeddings().weight
    trains_embeddings = embeddings.requires_grad
    embeddings.requires_grad_(cfg.train_word_embeddings and trains_embeddings)
    try:
        return _train(model, head, input_ids, labels, cfg, on_step, snapshot_at, on_snapshot)
    finally:
        embeddings.requires_grad_(trains_embeddings)


def _train(
    model: torch.nn.Module,
    head: LinearProbe,
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[int],
    cfg: FinetuneConfig,
    on_step: Callable[[int, float], None] | None,
    snapshot_at: Sequence[int],
    on_snapshot: Callable[[int, torch.nn.Module, LinearProbe], None] | None,
) -> LinearProbe:
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout
    weight = torch.nn.Parameter(head.weight.clone())
    bias = torch.nn.Parameter(head.bias.clone())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr},
         {"params": [weight, bias], "lr": cfg.head_lr}],
        weight_decay=cfg.weight_decay,
    )
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    targets = torch.tensor(list(labels), dtype=torch.long)
    n = len(targets)
    perm = torch.randperm(n, generator=gen)
    cursor = 0
    model.train()
    for step in range(cfg.steps):
        if cursor + cfg.batch_size > n:
            perm, cursor = torch.randperm(n, generator=gen), 0
        rows = perm[cursor: cursor + cfg.batch_size].tolist()
        cursor += cfg.batch_size
        width = max(len(input_ids[i]) for i in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(rows):
            ids[r, : len(input_ids[i])] = torch.tensor(input_ids[i])
            mask[r, : len(input_ids[i])] = 1
        scale = _schedule(step, cfg)
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * scale
        feats = pool_mean(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        loss = torch.nn.functional.cross_entropy(feats @ weight.T + bias, targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad] + [weight, bias], 1.0)
        optimizer.step()
        if on_step is not None:
            on_step(step, float(loss))
        if on_snapshot is not None and step + 1 in snapshot_at:
            model.eval()
            probe = LinearProbe(weight.detach().clone(), bias.detach().clone())
            on_snapshot(step + 1, model, probe)
            model.train()
    model.eval()
    return LinearProbe(weight.detach().clone(), bias.detach().clone())


def head_accuracy(feats: torch.Tensor, labels: Sequence[int], head: LinearProbe) -> float:
    """Accuracy of ``head`` on pooled features."""
    pred = head.logits(feats).argmax(1)
    return float((pred == torch.tensor(list(labels))).float().mean())
